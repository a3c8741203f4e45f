// Where each new token of a forward batch sits: rows of the activations are the sequences' new
// tokens one sequence after another; each row has a sequence, a position and that sequence's
// block table.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

namespace cachalot::model {

struct BatchLayout {
  std::vector<int64_t> seq_begin;                     // sequence s owns rows [seq_begin[s], seq_begin[s + 1])
  std::vector<int64_t> start;                         // position of sequence s's first new token
  std::vector<std::span<const int32_t>> block_table;  // sequence s's blocks
  std::vector<int64_t> row_seq;                       // per row: its sequence
  std::vector<int64_t> row_pos;                       // per row: its position

  int64_t rows() const { return static_cast<int64_t>(row_seq.size()); }
  int64_t sequences() const { return static_cast<int64_t>(start.size()); }
  // The block and slot holding row r's token in the cache.
  int32_t block_of(int64_t r) const { return block_table[row_seq[r]][row_pos[r] / 64]; }
  int64_t slot_of(int64_t r) const { return row_pos[r] % 64; }
};

struct SequenceStep;
// The layout of a batch; checks each step (new tokens, start, enough blocks, context length).
BatchLayout make_layout(std::span<const SequenceStep> steps, int64_t max_positions);

// The layout of sequences `seqs` of `layout` alone (in that order); rows[i] = the row of
// `layout` that the sub-layout's row i is.
BatchLayout select_sequences(const BatchLayout& layout, std::span<const int64_t> seqs, std::vector<int64_t>& rows);

}  // namespace cachalot::model
