// The table `satcap eval` prints from its metrics.json (evaluate.h): the images and the beam, one
// line per metric (value and x100), pointing with its chance level and mass in the box, and the
// attention entropy against the uniform one.
#pragma once

#include <nlohmann/json.hpp>

#include <ostream>

namespace satcap {

// Writes the table to `out` (its format flags and precision are restored afterwards). Metrics
// missing from `metrics` are left out.
void print_metrics_table(const nlohmann::json& metrics, std::ostream& out);

}  // namespace satcap
