// `cachalot cost --plot out.svg`: the day's load curve (input and output tokens/s) above the
// nodes in service (prefill and decode stacked, the static peak fleet dashed), as a standalone
// SVG any browser opens. Curves are hourly steps; each series is one <polyline> with an id
// (load-input, load-output, nodes-prefill, nodes-total, static-peak) so tools can find it.
#pragma once

#include <string>

#include "cost/report.h"

namespace cachalot::cost {

std::string plot_svg(const Report& report);

}  // namespace cachalot::cost
