// Command-line options from the library's option tables (satcap/runtime/option_table.h): every
// user field of an options struct becomes a flag with its help text and default, and the binder
// remembers which ones the user typed, so a command can apply them over a config file
// (defaults < config file < command line).
//   bool      --name / --no-name
//   enum      --name VALUE, checked against the enum's names
//   nested    its fields, the nested field's flag as their prefix (TrainOptions::validation: --val-beam)
//   other     --name VALUE
#pragma once

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <optional>
#include <set>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "satcap/decode/search_options.h"
#include "satcap/runtime/option_table.h"

namespace satcap::app {

// --name VALUE for an enum with EnumNames: one of its names (a number is not taken), the default
// shown by name. Help and errors read as CLI::IsMember's over the names, in the table's order
// ("TEXT:{soft,hard}=soft", "--attention: medium not in {soft,hard}").
template <typename E>
CLI::Option* add_enum_option(CLI::App& app, const std::string& name, E& member, const std::string& help) {
  std::string names;
  for (const auto& entry : EnumNames<E>::table()) names += (names.empty() ? "{" : ",") + entry.first;
  names += "}";
  CLI::Validator to_value(
      [names](std::string& input) -> std::string {
        const std::optional<E> value = enum_from_name<E>(input);
        if (!value) return input + " not in " + names;
        input = std::to_string(static_cast<std::underlying_type_t<E>>(*value));  // what CLI11 converts to E
        return {};
      },
      names);
  return app.add_option(name, member, help)->transform(to_value)->type_name("TEXT")->default_str(enum_name(member));
}

class OptionBinder {
 public:
  // Adds a flag for each user field of `object` (kept alive by the caller until parsing is done),
  // under `flag_prefix` ("--", or "--val-" for a nested search), except the fields at the JSON
  // pointers in `skip` ("/resume", "/decoder/attention"). `path` is the JSON pointer of `object`
  // in the command's options ("" for the top level).
  template <typename S>
  void add(CLI::App& app, S& object, const std::string& flag_prefix = "--", const std::string& path = "",
           const std::set<std::string>& skip = {}) {
    for_each_field<S>([&](const auto& field) {
      const std::string key_path = path + "/" + field.key;
      if (field.use != FieldUse::user || skip.count(key_path) != 0) return;
      using T = typename std::decay_t<decltype(field)>::Type;
      T& member = object.*(field.member);
      if constexpr (has_option_fields<T>::value) {
        add(app, member, field.flag != nullptr ? field.flag : flag_prefix, key_path, skip);
      } else {
        const std::string name = flag_prefix + option_flag(field.key, field.flag).substr(2);
        CLI::Option* opt = nullptr;
        if constexpr (std::is_same_v<T, bool>) {
          opt = app.add_flag(name + ",!--no-" + name.substr(flag_prefix.size()), member, field.help);
        } else if constexpr (has_enum_names<T>::value) {
          opt = add_enum_option(app, name, member, field.help);
        } else {
          opt = app.add_option(name, member, field.help)->capture_default_str();
        }
        options_.emplace_back(opt, key_path);
      }
    });
  }

  // The options the user typed, as JSON at their paths, with the values `parsed` (the options struct
  // the flags were bound to, as JSON) holds for them.
  nlohmann::json typed(const nlohmann::json& parsed) const {
    nlohmann::json out = nlohmann::json::object();
    for (const auto& [opt, path] : options_) {
      if (opt->count() == 0) continue;
      const nlohmann::json::json_pointer pointer(path);
      out[pointer] = parsed.at(pointer);
    }
    return out;
  }

  // Whether the option bound at `path` ("/validation/beam_size") was typed.
  bool was_typed(const std::string& path) const {
    for (const auto& [opt, p] : options_)
      if (p == path) return opt->count() > 0;
    return false;
  }

 private:
  std::vector<std::pair<CLI::Option*, std::string>> options_;
};

// The search flags of every command that decodes: --beam, --max-len, --length-penalty,
// --alternatives (unless `with_alternatives` is false) and --hard-decode.
inline void add_search_options(CLI::App& app, SearchOptions& search, bool with_alternatives = true) {
  OptionBinder binder;
  binder.add(app, search, "--", "", with_alternatives ? std::set<std::string>{} : std::set<std::string>{"/alternatives"});
}

}  // namespace satcap::app
