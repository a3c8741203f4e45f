#include "model/batch_layout.h"

#include "core/error.h"
#include "model/model.h"

namespace cachalot::model {

BatchLayout make_layout(std::span<const SequenceStep> steps, int64_t max_positions) {
  BatchLayout l;
  l.seq_begin.push_back(0);
  for (size_t s = 0; s < steps.size(); ++s) {
    const SequenceStep& st = steps[s];
    const int64_t n = static_cast<int64_t>(st.tokens.size());
    CACHALOT_CHECK_ARG(n > 0, "forward: sequence {} has no new tokens", s);
    CACHALOT_CHECK_ARG(st.start >= 0, "forward: sequence {} starts at negative position {}", s, st.start);
    CACHALOT_CHECK_ARG(st.start + n <= max_positions,
                       "forward: sequence {} would reach position {}, past the model's context of {} tokens", s,
                       st.start + n, max_positions);
    const int64_t blocks = (st.start + n + 63) / 64;
    CACHALOT_CHECK_ARG(static_cast<int64_t>(st.block_table.size()) >= blocks,
                       "forward: sequence {} needs {} KV blocks for {} tokens but its block table has {}", s, blocks,
                       st.start + n, st.block_table.size());
    l.start.push_back(st.start);
    l.block_table.push_back(st.block_table);
    for (int64_t i = 0; i < n; ++i) {
      l.row_seq.push_back(static_cast<int64_t>(s));
      l.row_pos.push_back(st.start + i);
    }
    l.seq_begin.push_back(l.seq_begin.back() + n);
  }
  return l;
}

BatchLayout select_sequences(const BatchLayout& layout, std::span<const int64_t> seqs, std::vector<int64_t>& rows) {
  BatchLayout sub;
  sub.seq_begin.push_back(0);
  rows.clear();
  for (const int64_t s : seqs) {
    const int64_t index = sub.sequences();
    sub.start.push_back(layout.start[s]);
    sub.block_table.push_back(layout.block_table[s]);
    for (int64_t r = layout.seq_begin[s]; r < layout.seq_begin[s + 1]; ++r) {
      rows.push_back(r);
      sub.row_seq.push_back(index);
      sub.row_pos.push_back(layout.row_pos[r]);
    }
    sub.seq_begin.push_back(sub.rows());
  }
  return sub;
}

}  // namespace cachalot::model
