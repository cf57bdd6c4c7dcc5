// The metrics table of `satcap eval` (see metrics_table.h).
#include "eval/metrics_table.h"

#include <iomanip>
#include <optional>
#include <string>

#include "satcap/eval/metrics.h"

using nlohmann::json;

namespace satcap {

void print_metrics_table(const json& m, std::ostream& out) {
  auto num = [&](const char* key) -> std::optional<double> {
    if (!m.contains(key) || !m[key].is_number()) return std::nullopt;
    return m[key].get<double>();
  };
  out << "images: " << m.value("images", 0) << " (split " << m.value("split", std::string("?")) << ", beam "
      << m.value("beam", 0) << ")";
  if (m.value("images_failed", 0) > 0) out << ", " << m.value("images_failed", 0) << " failed";
  out << "\n";
  const std::ios_base::fmtflags flags = out.flags();
  const std::streamsize precision = out.precision();
  for (const auto& name : metric_names()) {
    const auto v = num(name.c_str());
    if (!v) continue;
    out << std::left << std::setw(18) << name << std::right << std::fixed << std::setprecision(4) << std::setw(8) << *v
        << "   (x100: " << std::setprecision(1) << 100 * *v << ")\n";
  }
  if (m.contains("pointing")) {
    out << std::left << std::setw(18) << "pointing" << std::right;
    if (const auto p = num("pointing")) {
      out << std::fixed << std::setprecision(4) << std::setw(8) << *p << "   (" << m.value("pointing_hits", 0) << "/"
          << m.value("pointing_words", 0) << " object words";
      if (const auto c = num("pointing_chance")) out << "; chance " << std::setprecision(4) << *c;
      if (const auto mass = num("pointing_mass")) out << "; mass in box " << std::setprecision(4) << *mass;
      out << ")\n";
    } else {
      out << std::setw(8) << "-" << "   (no generated word names an object in its image)\n";
    }
  }
  if (const auto h = num("attention_entropy")) {
    out << std::left << std::setw(18) << "attention entropy" << std::right << std::fixed << std::setprecision(4)
        << std::setw(8) << *h << "   nats";
    if (const auto hmax = num("attention_entropy_max")) out << " (uniform: " << std::setprecision(4) << *hmax << ")";
    out << "\n";
  }
  out.flags(flags);
  out.precision(precision);
}

}  // namespace satcap
