// A small JSON Schema (draft 7) checker for the unit tests: the keywords rpc/schemas.cpp
// uses ($ref into #/components/schemas, type, const, enum, pattern, minimum, maximum,
// minLength, maxLength, required, properties, additionalProperties, items, maxItems,
// oneOf, allOf). It returns the first mismatch with its JSON pointer, or "" when the
// value conforms. The integration test checks live answers with python3-jsonschema.
#pragma once

#include <nlohmann/json.hpp>

#include <fmt/format.h>

#include <regex>
#include <string>

namespace bitacora::testing {

class SchemaChecker {
public:
    explicit SchemaChecker(const nlohmann::json& components) : m_components(components) {}

    std::string Check(const nlohmann::json& value, const nlohmann::json& schema, const std::string& at = "") const
    {
        if (auto ref = schema.find("$ref"); ref != schema.end()) {
            const std::string name = ref->get<std::string>().substr(std::string("#/components/schemas/").size());
            if (!m_components.contains(name)) return fmt::format("{}: unknown schema {}", at, name);
            return Check(value, m_components.at(name), at);
        }
        if (std::string why = CheckScalar(value, schema, at); !why.empty()) return why;
        if (value.is_object()) {
            if (std::string why = CheckObject(value, schema, at); !why.empty()) return why;
        }
        if (value.is_array()) {
            if (schema.contains("maxItems") && value.size() > schema["maxItems"].get<size_t>()) return at + ": too many items";
            for (size_t i = 0; schema.contains("items") && i < value.size(); ++i) {
                if (std::string why = Check(value[i], schema["items"], fmt::format("{}/{}", at, i)); !why.empty()) return why;
            }
        }
        for (const auto& part : schema.value("allOf", nlohmann::json::array())) {
            if (std::string why = Check(value, part, at); !why.empty()) return why;
        }
        if (schema.contains("oneOf")) {
            int matches = 0;
            std::string last;
            for (const auto& option : schema["oneOf"]) {
                last = Check(value, option, at);
                matches += last.empty();
            }
            if (matches != 1) return fmt::format("{}: {} of oneOf match ({})", at, matches, last);
        }
        return "";
    }

private:
    static bool IsType(const nlohmann::json& value, const std::string& type)
    {
        if (type == "object") return value.is_object();
        if (type == "array") return value.is_array();
        if (type == "string") return value.is_string();
        if (type == "integer") return value.is_number_integer();
        if (type == "number") return value.is_number();
        if (type == "boolean") return value.is_boolean();
        if (type == "null") return value.is_null();
        return false;
    }

    static std::string CheckScalar(const nlohmann::json& value, const nlohmann::json& schema, const std::string& at)
    {
        if (schema.contains("type") && !IsType(value, schema["type"].get<std::string>())) {
            return fmt::format("{}: {} is not of type {}", at, value.dump().substr(0, 80), schema["type"].dump());
        }
        if (schema.contains("const") && value != schema["const"]) return fmt::format("{}: not {}", at, schema["const"].dump());
        if (schema.contains("enum")) {
            bool found = false;
            for (const auto& option : schema["enum"]) found = found || option == value;
            if (!found) return fmt::format("{}: {} not in the enum", at, value.dump());
        }
        if (value.is_string()) {
            const auto& text = value.get_ref<const std::string&>();
            if (schema.contains("pattern") && !std::regex_search(text, std::regex(schema["pattern"].get<std::string>()))) {
                return fmt::format("{}: \"{}\" does not match {}", at, text.substr(0, 80), schema["pattern"].get<std::string>());
            }
            if (schema.contains("minLength") && text.size() < schema["minLength"].get<size_t>()) return at + ": too short";
            if (schema.contains("maxLength") && text.size() > schema["maxLength"].get<size_t>()) return at + ": too long";
        }
        if (value.is_number()) { // as doubles: the bounds used are 0, 1, small numbers and 2^64 - 1
            if (schema.contains("minimum") && value.get<double>() < schema["minimum"].get<double>()) return at + ": below the minimum";
            if (schema.contains("maximum") && value.get<double>() > schema["maximum"].get<double>()) return at + ": above the maximum";
        }
        return "";
    }

    std::string CheckObject(const nlohmann::json& value, const nlohmann::json& schema, const std::string& at) const
    {
        for (const auto& name : schema.value("required", nlohmann::json::array())) {
            if (!value.contains(name.get<std::string>())) return fmt::format("{}: lacks {}", at, name.get<std::string>());
        }
        const nlohmann::json properties = schema.value("properties", nlohmann::json::object());
        for (const auto& [key, item] : value.items()) {
            if (properties.contains(key)) {
                if (std::string why = Check(item, properties[key], at + "/" + key); !why.empty()) return why;
            } else if (schema.contains("additionalProperties")) {
                const auto& extra = schema["additionalProperties"];
                if (extra.is_boolean() && !extra.get<bool>()) return fmt::format("{}: unexpected member {}", at, key);
                if (extra.is_object()) {
                    if (std::string why = Check(item, extra, at + "/" + key); !why.empty()) return why;
                }
            }
        }
        return "";
    }

    const nlohmann::json& m_components;
};

} // namespace bitacora::testing
