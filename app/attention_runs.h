// Which attention kinds a command that runs both (`satcap compare`, `satcap bench`) runs this time.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "satcap/model/decoder_options.h"
#include "satcap/runtime/option_table.h"

namespace satcap {

enum class AttentionRuns { both, soft, hard };

template <>
struct EnumNames<AttentionRuns> {
  static const std::vector<std::pair<std::string, AttentionRuns>>& table() {
    static const std::vector<std::pair<std::string, AttentionRuns>> t{
        {"both", AttentionRuns::both}, {"soft", AttentionRuns::soft}, {"hard", AttentionRuns::hard}};
    return t;
  }
};

// Whether `runs` includes `kind`.
inline bool runs_attention(AttentionRuns runs, AttentionKind kind) {
  return runs == AttentionRuns::both || (runs == AttentionRuns::soft) == (kind == AttentionKind::soft);
}

}  // namespace satcap
