#include "cost/svg_plot.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

namespace cachalot::cost {
namespace {

constexpr double kWidth = 960, kHeight = 620;
constexpr double kLeft = 90, kRight = 180;  // the legend sits right of the plots

// A panel maps (hour, value) onto its rectangle.
struct Panel {
  double top, bottom, max_value;
  double x(double hour) const { return kLeft + hour / kHours * (kWidth - kLeft - kRight); }
  double y(double v) const { return bottom - v / max_value * (bottom - top); }
};

// The smallest round number (1, 1.5, 2, 2.5, 3, 4, 5, 6 or 8 x 10^k) at or above v: an axis top.
double nice_ceiling(double v) {
  if (v <= 0) return 1;
  const double p = std::pow(10.0, std::floor(std::log10(v)));
  for (double m : {1.0, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0})
    if (m * p >= v * (1 - 1e-12)) return m * p;
  return 10 * p;
}

std::string xml_escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      default: out += c;
    }
  }
  return out;
}

std::string axis_label(double v) {
  if (v >= 1e6) return fmt::format("{:g}M", v / 1e6);
  if (v >= 1e3) return fmt::format("{:g}k", v / 1e3);
  return fmt::format("{:g}", v);
}

// Hourly values as steps: (h, v) to (h + 1, v) for every hour.
std::string step_points(const Panel& p, const Hourly& values) {
  std::string pts;
  for (int h = 0; h < kHours; ++h)
    pts += fmt::format("{:.1f},{:.1f} {:.1f},{:.1f} ", p.x(h), p.y(values[h]), p.x(h + 1), p.y(values[h]));
  pts.pop_back();
  return pts;
}

std::string polyline(const char* id, const Panel& p, const Hourly& values, const char* color, const char* extra = "") {
  return fmt::format("<polyline id=\"{}\" fill=\"none\" stroke=\"{}\" stroke-width=\"2\"{} points=\"{}\"/>\n", id, color,
                     extra, step_points(p, values));
}

// A closed area under a step curve, down to `base` (another step curve) for stacking.
std::string area(const char* id, const Panel& p, const Hourly& top, const Hourly& base, const char* color) {
  std::string pts = step_points(p, top);
  for (int h = kHours - 1; h >= 0; --h)
    pts += fmt::format(" {:.1f},{:.1f} {:.1f},{:.1f}", p.x(h + 1), p.y(base[h]), p.x(h), p.y(base[h]));
  return fmt::format("<polygon id=\"{}\" fill=\"{}\" fill-opacity=\"0.35\" stroke=\"none\" points=\"{}\"/>\n", id, color, pts);
}

std::string axes(const Panel& p, const std::string& title) {
  std::string out = fmt::format("<text x=\"{}\" y=\"{}\" font-size=\"14\" font-weight=\"bold\">{}</text>\n", kLeft,
                                p.top - 12, xml_escape(title));
  for (int i = 0; i <= 4; ++i) {
    const double v = p.max_value * i / 4;
    out += fmt::format("<line x1=\"{0}\" y1=\"{1:.1f}\" x2=\"{2}\" y2=\"{1:.1f}\" stroke=\"#ddd\"/>\n", kLeft, p.y(v),
                       kWidth - kRight);
    out += fmt::format("<text x=\"{}\" y=\"{:.1f}\" font-size=\"11\" text-anchor=\"end\">{}</text>\n", kLeft - 6,
                       p.y(v) + 4, axis_label(v));
  }
  for (int h = 0; h <= kHours; h += 3) {
    out += fmt::format("<line x1=\"{0:.1f}\" y1=\"{1}\" x2=\"{0:.1f}\" y2=\"{2}\" stroke=\"#888\"/>\n", p.x(h), p.bottom,
                       p.bottom + 4);
    out += fmt::format("<text x=\"{:.1f}\" y=\"{}\" font-size=\"11\" text-anchor=\"middle\">{:02}:00</text>\n", p.x(h),
                       p.bottom + 17, h);
  }
  out += fmt::format("<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"none\" stroke=\"#888\"/>\n", kLeft, p.top,
                     kWidth - kLeft - kRight, p.bottom - p.top);
  return out;
}

std::string legend_entry(double y, const char* color, const std::string& label, bool dashed = false) {
  return fmt::format(
      "<line x1=\"{0}\" y1=\"{1}\" x2=\"{2}\" y2=\"{1}\" stroke=\"{3}\" stroke-width=\"3\"{4}/>\n"
      "<text x=\"{5}\" y=\"{6}\" font-size=\"12\">{7}</text>\n",
      kWidth - kRight + 15, y, kWidth - kRight + 40, color, dashed ? " stroke-dasharray=\"6,4\"" : "", kWidth - kRight + 46,
      y + 4, xml_escape(label));
}

}  // namespace

std::string plot_svg(const Report& r) {
  const Load& load = r.scenario.load;
  const double load_max = std::max(*std::max_element(load.input_tokens_per_s.begin(), load.input_tokens_per_s.end()),
                                    *std::max_element(load.output_tokens_per_s.begin(), load.output_tokens_per_s.end()));
  const Panel top{60, 280, nice_ceiling(load_max)};
  const Panel bottom{350, 570, nice_ceiling(std::max(r.static_nodes, r.peak_nodes))};

  std::string svg = fmt::format(
      "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{0}\" height=\"{1}\" viewBox=\"0 0 {0} {1}\" "
      "font-family=\"sans-serif\">\n<title>{2}</title>\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n",
      kWidth, kHeight, xml_escape(r.scenario.name));
  svg += fmt::format("<text x=\"{}\" y=\"24\" font-size=\"16\" font-weight=\"bold\">{}</text>\n", kLeft,
                     xml_escape(r.scenario.name));
  svg += axes(top, "load (tokens/s)");
  svg += polyline("load-input", top, load.input_tokens_per_s, "#1f77b4");
  svg += polyline("load-output", top, load.output_tokens_per_s, "#ff7f0e");
  svg += legend_entry(top.top + 10, "#1f77b4", "input tokens/s");
  svg += legend_entry(top.top + 30, "#ff7f0e", "output tokens/s");

  svg += axes(bottom, fmt::format("nodes in service ({}; {:.1f} node-hours, ${:.{}f} a day)",
                                  r.scenario.scaling.policy == Policy::kStatic ? "static peak" : "autoscaled", r.node_hours,
                                  r.cost, r.cost < 1000 ? 2 : 0));
  const Hourly zero{};
  svg += area("nodes-prefill", bottom, r.prefill.nodes, zero, "#2ca02c");
  svg += area("nodes-decode", bottom, r.nodes, r.prefill.nodes, "#9467bd");
  svg += polyline("nodes-total", bottom, r.nodes, "#333");
  Hourly peak{};
  peak.fill(r.static_nodes);
  svg += polyline("static-peak", bottom, peak, "#d62728", " stroke-dasharray=\"6,4\"");
  svg += legend_entry(bottom.top + 10, "#2ca02c", "prefill nodes");
  svg += legend_entry(bottom.top + 30, "#9467bd", "decode nodes");
  svg += legend_entry(bottom.top + 50, "#333", "all nodes");
  svg += legend_entry(bottom.top + 70, "#d62728", "static peak fleet", true);
  svg += "</svg>\n";
  return svg;
}

}  // namespace cachalot::cost
