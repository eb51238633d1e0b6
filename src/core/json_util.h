// Small helpers for reading JSON files with errors that name the file and the field.
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace wick {

/// Reads a whole file; throws not_found naming the path.
std::string read_text_file(const std::filesystem::path& path);
/// Parses JSON; throws corrupt "<source>: not valid JSON (...)", or "<source>: a number does not fit a double".
nlohmann::json parse_json(std::string_view text, const std::string& source);
/// Called inside a `catch` of an exception from nlohmann's parser (one driven by a SAX handler too): rethrows it as
/// parse_json's corrupt error; an exception of another kind goes on unchanged.
[[noreturn]] void fail_parsing_json(const std::string& source);

/// Typed getters: absent or null -> std::nullopt; wrong type -> corrupt "<source>: field 'key': expected ...".
std::optional<int64_t> json_int(const nlohmann::json& obj, const char* key, const std::string& source);
std::optional<double> json_number(const nlohmann::json& obj, const char* key, const std::string& source);
std::optional<bool> json_bool(const nlohmann::json& obj, const char* key, const std::string& source);
std::optional<std::string> json_string(const nlohmann::json& obj, const char* key, const std::string& source);

}  // namespace wick
