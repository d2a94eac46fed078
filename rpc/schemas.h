// JSON Schemas (draft 7, the dialect of OpenRPC 1.x) of what the API answers, and the
// OpenRPC document that rpc_discover serves, generated from the method table: each
// method's params from its ParamSpecs (type, or an explicit schema) and its result from
// its result_schema, which refers to the named schemas below. A TypeScript or Go client
// generates its types from it (docs/api.md); tests check real answers against it.
#pragma once

#include "rpc/json_rpc.h"

#include <nlohmann/json.hpp>

#include <string_view>

namespace bitacora::rpc {

// {"$ref": "#/components/schemas/<name>"}; `name` must be one of SchemaComponents().
nlohmann::json SchemaRef(std::string_view name);
// {"oneOf": [schema, {"type": "null"}]}.
nlohmann::json Nullable(nlohmann::json schema);
// The named schemas: hex forms, ledger records, events (one per kind), proofs, anchors.
const nlohmann::json& SchemaComponents();
// A param's schema: its own, or the one its type implies.
nlohmann::json ParamSchema(const ParamSpec& param);
// The OpenRPC document of every method of the table.
nlohmann::json OpenRpcDocument(const Dispatcher& dispatcher);

} // namespace bitacora::rpc
