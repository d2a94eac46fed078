#include "rpc/schemas.h"

#include <fmt/format.h>

namespace bitacora::rpc {
namespace {

using nlohmann::json;

// The answers' shapes, as rpc/ledger_json.cpp and rpc/methods.cpp write them. Records we
// own list every member (additionalProperties false: a new member must be added here, or
// the api_doc and integration tests fail); bitacora_status's sources and the backup
// manifest are described, not closed.
constexpr const char* kComponents = R"json({
  "Hex": {"type": "string", "pattern": "^0x([0-9a-f]{2})*$", "description": "bytes, 0x-prefixed lower-case hex"},
  "Hash32": {"type": "string", "pattern": "^0x[0-9a-f]{64}$", "description": "32 bytes, 0x-prefixed; Bitcoin txids and block hashes in bitcoind's display order"},
  "Signature64": {"type": "string", "pattern": "^0x[0-9a-f]{128}$", "description": "a 64-byte BIP-340 signature"},
  "Header80": {"type": "string", "pattern": "^0x[0-9a-f]{160}$", "description": "an 80-byte Bitcoin block header"},
  "Address": {"type": "string", "pattern": "^0x[0-9a-f]{40}$", "description": "an EVM address, lower case"},
  "AddressInput": {"type": "string", "pattern": "^0x[0-9a-fA-F]{40}$", "description": "an EVM address, either case"},
  "HexInput32": {"type": "string", "pattern": "^(0x)?[0-9a-fA-F]{64}$", "description": "32 bytes of hex, 0x optional"},
  "HexInput64": {"type": "string", "pattern": "^(0x)?[0-9a-fA-F]{128}$", "description": "64 bytes of hex, 0x optional"},
  "OrderFilter": {"type": "object", "additionalProperties": false,
    "properties": {"seller": {"$ref": "#/components/schemas/AddressInput"}, "buyer": {"$ref": "#/components/schemas/AddressInput"},
      "state": {"type": "string", "enum": ["awaiting_payment", "awaiting_delivery", "disputed", "complete", "refunded"]},
      "expiryFrom": {"$ref": "#/components/schemas/Uint64"}, "expiryTo": {"$ref": "#/components/schemas/Uint64"}}},
  "Decimal": {"type": "string", "pattern": "^(0|[1-9][0-9]{0,77})$", "description": "an unsigned integer below 2^256, in decimal (never a JSON number: no float loses it)"},
  "SignedDecimal": {"type": "string", "pattern": "^(0|-?[1-9][0-9]{0,77})$"},
  "Uint64": {"type": "integer", "minimum": 0, "maximum": 18446744073709551615},
  "Cursor": {"type": "string", "pattern": "^(0|[1-9][0-9]*)$", "description": "where the next page starts: pass it back as `cursor` with the same filters"},
  "NextCursor": {"oneOf": [{"$ref": "#/components/schemas/Cursor"}, {"type": "null"}], "description": "null: the list ends here"},
  "Status": {"type": "string", "enum": ["final", "pending"]},
  "OrderState": {"type": "string", "enum": ["none", "awaiting_payment", "awaiting_delivery", "disputed", "complete", "refunded"]},
  "AnchorState": {"type": "string", "enum": ["planned", "signed", "broadcast", "confirmed", "final", "abandoned"]},
  "EventKind": {"type": "string", "enum": ["order_created", "payment_confirmed", "order_released", "order_cancelled", "order_expired", "order_disputed", "dispute_resolved", "reputation_changed", "escrow_paused", "role_changed", "vault_deposit", "vault_withdraw", "vault_transfer", "raw_evm_log", "offchain", "anchor"]},
  "LogPosition": {"type": "object", "description": "a final event's ledger index, or a pending one's pendingId (index null)",
    "required": ["index"],
    "properties": {"index": {"oneOf": [{"$ref": "#/components/schemas/Uint64"}, {"type": "null"}]}, "pendingId": {"type": "string"}}},
  "OrderHistoryEntry": {"allOf": [{"$ref": "#/components/schemas/LogPosition"}, {"type": "object", "required": ["kind"], "properties": {"kind": {"$ref": "#/components/schemas/EventKind"}}}]},
  "OrderAnomaly": {"allOf": [{"$ref": "#/components/schemas/LogPosition"}, {"type": "object", "required": ["reason"], "properties": {"reason": {"type": "string"}}}]},
  "Order": {"type": "object", "additionalProperties": false,
    "required": ["orderId", "state", "stateCode", "seller", "buyer", "amount", "expiry", "paymentProof", "disputedBy", "history", "historyDropped", "anomalies", "anomaliesDropped", "status"],
    "properties": {
      "orderId": {"$ref": "#/components/schemas/Decimal"}, "state": {"$ref": "#/components/schemas/OrderState"},
      "stateCode": {"type": "integer", "minimum": 0, "maximum": 5}, "seller": {"$ref": "#/components/schemas/Address"},
      "buyer": {"$ref": "#/components/schemas/Address"}, "amount": {"$ref": "#/components/schemas/Decimal"},
      "expiry": {"$ref": "#/components/schemas/Uint64"}, "paymentProof": {"$ref": "#/components/schemas/Hash32"},
      "disputedBy": {"$ref": "#/components/schemas/Address"},
      "history": {"type": "array", "maxItems": 64, "items": {"$ref": "#/components/schemas/OrderHistoryEntry"}},
      "historyDropped": {"$ref": "#/components/schemas/Uint64"},
      "anomalies": {"type": "array", "items": {"$ref": "#/components/schemas/OrderAnomaly"}},
      "anomaliesDropped": {"$ref": "#/components/schemas/Uint64"}, "status": {"$ref": "#/components/schemas/Status"}}},
  "Reputation": {"type": "object", "additionalProperties": false, "required": ["seller", "reputation", "status"],
    "properties": {"seller": {"$ref": "#/components/schemas/Address"}, "reputation": {"type": "integer", "minimum": 0, "maximum": 100}, "status": {"$ref": "#/components/schemas/Status"}}},
  "Position": {"type": "object", "additionalProperties": false,
    "required": ["owner", "shares", "assetsIn", "assetsOut", "costBasis", "realizedYield", "status"],
    "properties": {"owner": {"$ref": "#/components/schemas/Address"}, "shares": {"$ref": "#/components/schemas/Decimal"},
      "assetsIn": {"$ref": "#/components/schemas/Decimal"}, "assetsOut": {"$ref": "#/components/schemas/Decimal"},
      "costBasis": {"$ref": "#/components/schemas/Decimal"}, "realizedYield": {"$ref": "#/components/schemas/SignedDecimal"},
      "status": {"$ref": "#/components/schemas/Status"}}},
  "Totals": {"type": "object", "additionalProperties": false,
    "required": ["escrowLocked", "vaultAssetsIn", "vaultAssetsOut", "vaultShares", "orders", "ordersOpen", "anomalies", "offchainEvents", "anchorEvents", "escrowPaused", "status"],
    "properties": {"escrowLocked": {"$ref": "#/components/schemas/Decimal"}, "vaultAssetsIn": {"$ref": "#/components/schemas/Decimal"},
      "vaultAssetsOut": {"$ref": "#/components/schemas/Decimal"}, "vaultShares": {"$ref": "#/components/schemas/Decimal"},
      "orders": {"$ref": "#/components/schemas/Uint64"}, "ordersOpen": {"$ref": "#/components/schemas/Uint64"},
      "anomalies": {"$ref": "#/components/schemas/Uint64"}, "offchainEvents": {"$ref": "#/components/schemas/Uint64"},
      "anchorEvents": {"$ref": "#/components/schemas/Uint64"}, "escrowPaused": {"type": "boolean"}, "status": {"$ref": "#/components/schemas/Status"}}},
  "EvmOrigin": {"type": "object", "additionalProperties": false,
    "required": ["chainId", "blockNumber", "blockHash", "transactionHash", "logIndex", "contract"],
    "properties": {"chainId": {"$ref": "#/components/schemas/Uint64"}, "blockNumber": {"$ref": "#/components/schemas/Uint64"},
      "blockHash": {"$ref": "#/components/schemas/Hash32"}, "transactionHash": {"$ref": "#/components/schemas/Hash32"},
      "logIndex": {"type": "integer", "minimum": 0, "maximum": 4294967295}, "contract": {"$ref": "#/components/schemas/Address"}}},
  "EventItem": {"type": "object", "additionalProperties": false, "required": ["index", "event", "leaf"],
    "properties": {"index": {"$ref": "#/components/schemas/Uint64"}, "event": {"$ref": "#/components/schemas/Event"}, "leaf": {"$ref": "#/components/schemas/Hex"}}},
  "Checkpoint": {"type": "object", "additionalProperties": false, "required": ["treeSize", "root", "timestamp", "publicKey", "signature"],
    "properties": {"treeSize": {"$ref": "#/components/schemas/Uint64"}, "root": {"$ref": "#/components/schemas/Hash32"},
      "timestamp": {"$ref": "#/components/schemas/Uint64"}, "publicKey": {"$ref": "#/components/schemas/Hash32"},
      "signature": {"$ref": "#/components/schemas/Signature64"}}},
  "InclusionProof": {"type": "object", "additionalProperties": false, "required": ["index", "treeSize", "leaf", "path", "root"],
    "properties": {"index": {"$ref": "#/components/schemas/Uint64"}, "treeSize": {"$ref": "#/components/schemas/Uint64"},
      "leaf": {"$ref": "#/components/schemas/Hex"}, "path": {"type": "array", "items": {"$ref": "#/components/schemas/Hash32"}},
      "root": {"$ref": "#/components/schemas/Hash32"}}},
  "ConsistencyProof": {"type": "object", "additionalProperties": false, "required": ["firstSize", "secondSize", "firstRoot", "secondRoot", "path"],
    "description": "RFC 9162 consistency proof; in an anchor's consistency member, fromAnchor names the earlier anchor",
    "properties": {"firstSize": {"$ref": "#/components/schemas/Uint64"}, "secondSize": {"$ref": "#/components/schemas/Uint64"},
      "firstRoot": {"$ref": "#/components/schemas/Hash32"}, "secondRoot": {"$ref": "#/components/schemas/Hash32"},
      "path": {"type": "array", "items": {"$ref": "#/components/schemas/Hash32"}}, "fromAnchor": {"$ref": "#/components/schemas/Uint64"}}},
  "AnchorProof": {"type": "object", "additionalProperties": false,
    "required": ["id", "status", "treeSize", "root", "payload", "tx", "txid", "outputIndex", "payloadOffset", "txIndex", "branch", "header", "blockHash", "blockHeight"],
    "properties": {"id": {"$ref": "#/components/schemas/Uint64"}, "status": {"type": "string", "enum": ["confirmed", "final"]},
      "treeSize": {"$ref": "#/components/schemas/Uint64"}, "root": {"$ref": "#/components/schemas/Hash32"},
      "payload": {"type": "string", "pattern": "^0x[0-9a-f]{90}$"}, "tx": {"$ref": "#/components/schemas/Hex"},
      "txid": {"$ref": "#/components/schemas/Hash32"}, "outputIndex": {"$ref": "#/components/schemas/Uint64"},
      "payloadOffset": {"$ref": "#/components/schemas/Uint64"}, "txIndex": {"$ref": "#/components/schemas/Uint64"},
      "branch": {"type": "array", "maxItems": 32, "items": {"$ref": "#/components/schemas/Hash32"}},
      "header": {"$ref": "#/components/schemas/Header80"}, "blockHash": {"$ref": "#/components/schemas/Hash32"},
      "blockHeight": {"$ref": "#/components/schemas/Uint64"}}},
  "Anchor": {"type": "object", "additionalProperties": false,
    "required": ["id", "state", "treeSize", "root", "plannedTime", "updatedTime", "txids", "feeBumps"],
    "properties": {"id": {"$ref": "#/components/schemas/Uint64"}, "state": {"$ref": "#/components/schemas/AnchorState"},
      "treeSize": {"$ref": "#/components/schemas/Uint64"}, "root": {"$ref": "#/components/schemas/Hash32"},
      "plannedTime": {"$ref": "#/components/schemas/Uint64"}, "updatedTime": {"$ref": "#/components/schemas/Uint64"},
      "txids": {"type": "array", "items": {"$ref": "#/components/schemas/Hash32"}}, "feeBumps": {"$ref": "#/components/schemas/Uint64"},
      "txid": {"$ref": "#/components/schemas/Hash32"}, "blockHeight": {"$ref": "#/components/schemas/Uint64"},
      "blockHash": {"$ref": "#/components/schemas/Hash32"}, "note": {"type": "string"},
      "consistency": {"$ref": "#/components/schemas/ConsistencyProof"},
      "proof": {"oneOf": [{"$ref": "#/components/schemas/AnchorProof"}, {"type": "null"}]}}},
  "ProofBundle": {"type": "object", "additionalProperties": false, "required": ["version", "index", "event", "proof", "checkpoint", "anchor"],
    "properties": {"version": {"const": 2}, "index": {"$ref": "#/components/schemas/Uint64"}, "event": {"$ref": "#/components/schemas/Event"},
      "proof": {"$ref": "#/components/schemas/InclusionProof"}, "checkpoint": {"$ref": "#/components/schemas/Checkpoint"},
      "anchor": {"oneOf": [{"$ref": "#/components/schemas/AnchorProof"}, {"type": "null"}]}}},
  "LedgerHealth": {"type": "object", "additionalProperties": false, "required": ["state", "reason"],
    "properties": {"state": {"type": "string", "enum": ["ok", "degraded", "read-only"]}, "reason": {"type": "string"}}},
  "ConsistencyReport": {"type": "object", "additionalProperties": false,
    "required": ["consistent", "treeSize", "root", "recomputedRoot", "nodesChecked", "stateHash", "derivedStateHash", "problems", "problemsTotal"],
    "properties": {"consistent": {"type": "boolean"}, "treeSize": {"$ref": "#/components/schemas/Uint64"},
      "root": {"$ref": "#/components/schemas/Hash32"}, "recomputedRoot": {"$ref": "#/components/schemas/Hash32"},
      "nodesChecked": {"$ref": "#/components/schemas/Uint64"}, "stateHash": {"$ref": "#/components/schemas/Hash32"},
      "derivedStateHash": {"$ref": "#/components/schemas/Hash32"}, "problems": {"type": "array", "items": {"type": "string"}},
      "problemsTotal": {"$ref": "#/components/schemas/Uint64"}}},
  "FinalEvent": {"type": "object", "additionalProperties": false, "required": ["index", "event", "leaf", "status"],
    "properties": {"index": {"$ref": "#/components/schemas/Uint64"}, "event": {"$ref": "#/components/schemas/Event"},
      "leaf": {"$ref": "#/components/schemas/Hex"}, "status": {"const": "final"}}},
  "OrderPage": {"type": "object", "additionalProperties": false, "required": ["orders", "nextCursor"],
    "properties": {"orders": {"type": "array", "items": {"$ref": "#/components/schemas/Order"}}, "nextCursor": {"$ref": "#/components/schemas/NextCursor"}}},
  "EventPage": {"type": "object", "additionalProperties": false, "required": ["events", "nextCursor"],
    "properties": {"events": {"type": "array", "items": {"$ref": "#/components/schemas/EventItem"}}, "nextCursor": {"$ref": "#/components/schemas/NextCursor"}}},
  "OrderEventPage": {"type": "object", "additionalProperties": false, "required": ["orderId", "events", "historyDropped", "nextCursor"],
    "properties": {"orderId": {"$ref": "#/components/schemas/Decimal"}, "events": {"type": "array", "items": {"$ref": "#/components/schemas/EventItem"}},
      "historyDropped": {"$ref": "#/components/schemas/Uint64"}, "nextCursor": {"$ref": "#/components/schemas/NextCursor"}}},
  "AnchorPage": {"type": "object", "additionalProperties": false, "required": ["anchors", "nextCursor"],
    "properties": {"anchors": {"type": "array", "items": {"$ref": "#/components/schemas/Anchor"}}, "nextCursor": {"$ref": "#/components/schemas/NextCursor"}}},
  "AnchorNowResult": {"type": "object", "additionalProperties": false, "required": ["anchored", "message", "anchor"],
    "properties": {"anchored": {"type": "boolean"}, "message": {"type": "string"},
      "anchor": {"oneOf": [{"$ref": "#/components/schemas/Anchor"}, {"type": "null"}]}}},
  "SubmitResult": {"type": "object", "additionalProperties": false, "required": ["index", "idempotencyKey", "status"],
    "properties": {"index": {"$ref": "#/components/schemas/Uint64"}, "idempotencyKey": {"type": "string"}, "status": {"const": "final"}}},
  "BackupResult": {"type": "object", "required": ["done", "dir"], "description": "BACKUP.json's content once done; else {done: false, dir, message}",
    "properties": {"done": {"type": "boolean"}, "dir": {"type": "string"}, "message": {"type": "string"},
      "treeSize": {"$ref": "#/components/schemas/Uint64"}, "root": {"$ref": "#/components/schemas/Hash32"},
      "anchors": {"$ref": "#/components/schemas/Uint64"},
      "latestAnchor": {"oneOf": [{"$ref": "#/components/schemas/Anchor"}, {"type": "null"}]}}},
  "BitacoraStatus": {"type": "object", "additionalProperties": false, "required": ["ledger", "sources"],
    "properties": {
      "ledger": {"type": "object", "additionalProperties": false, "required": ["size", "root", "health"],
        "properties": {"size": {"$ref": "#/components/schemas/Uint64"}, "root": {"$ref": "#/components/schemas/Hash32"},
          "checkpointKey": {"$ref": "#/components/schemas/Hash32"}, "health": {"$ref": "#/components/schemas/LedgerHealth"}}},
      "sources": {"type": "object", "description": "each follower's state (evm, btc): sync heights, reorgs, reconciliation, errors; and the ZMQ stream's (zmq)",
        "properties": {"evm": {"type": "object"}, "btc": {"type": "object"},
          "zmq": {"type": "object", "additionalProperties": false, "required": ["endpoint", "epoch", "published", "dropped"],
            "description": "the event stream; its sequence numbers restart when epoch changes (a new process)",
            "properties": {"endpoint": {"type": "string"}, "epoch": {"type": "string"},
              "published": {"$ref": "#/components/schemas/Uint64"}, "dropped": {"$ref": "#/components/schemas/Uint64"}}}}}}},
  "MethodList": {"type": "array", "items": {"type": "object", "additionalProperties": false,
    "required": ["name", "access", "params", "summary", "result"],
    "properties": {"name": {"type": "string"}, "access": {"type": "string", "enum": ["read", "write"]},
      "params": {"type": "array", "items": {"type": "object", "additionalProperties": false, "required": ["name", "type", "required", "help"],
        "properties": {"name": {"type": "string"}, "type": {"type": "string", "enum": ["string", "unsigned", "bool", "object", "any"]},
          "required": {"type": "boolean"}, "help": {"type": "string"}}}},
      "summary": {"type": "string"}, "result": {"type": "string"}}}},
  "OpenRpcDocument": {"type": "object", "required": ["openrpc", "info", "methods", "components"],
    "description": "an OpenRPC 1.2 document (https://spec.open-rpc.org)",
    "properties": {"openrpc": {"type": "string"}, "info": {"type": "object", "required": ["title", "version"]},
      "methods": {"type": "array", "items": {"type": "object", "required": ["name", "params", "result"]}},
      "components": {"type": "object", "required": ["schemas"]}}}
})json";

// Each event kind's `fields`: member name -> schema name (or an inline schema).
constexpr const char* kEventFields = R"json({
  "order_created": {"orderId": "Decimal", "seller": "Address", "buyer": "Address", "amount": "Decimal", "expiry": "Uint64"},
  "payment_confirmed": {"orderId": "Decimal", "buyer": "Address", "paymentProof": "Hash32"},
  "order_released": {"orderId": "Decimal", "seller": "Address", "buyer": "Address", "amount": "Decimal"},
  "order_cancelled": {"orderId": "Decimal", "seller": "Address", "amount": "Decimal"},
  "order_expired": {"orderId": "Decimal", "seller": "Address", "caller": "Address", "amount": "Decimal"},
  "order_disputed": {"orderId": "Decimal", "disputedBy": "Address", "byBuyer": {"type": "boolean"}},
  "dispute_resolved": {"orderId": "Decimal", "arbiter": "Address", "favorBuyer": {"type": "boolean"}, "recipient": "Address", "amount": "Decimal"},
  "reputation_changed": {"seller": "Address", "previous": {"type": "integer", "minimum": 0, "maximum": 255}, "current": {"type": "integer", "minimum": 0, "maximum": 255}},
  "escrow_paused": {"account": "Address", "paused": {"type": "boolean"}},
  "role_changed": {"role": "Hash32", "account": "Address", "sender": "Address", "granted": {"type": "boolean"}},
  "vault_deposit": {"sender": "Address", "owner": "Address", "assets": "Decimal", "shares": "Decimal"},
  "vault_withdraw": {"sender": "Address", "receiver": "Address", "owner": "Address", "assets": "Decimal", "shares": "Decimal"},
  "vault_transfer": {"from": "Address", "to": "Address", "value": "Decimal"},
  "raw_evm_log": {"topics": {"type": "array", "maxItems": 4, "items": {"$ref": "#/components/schemas/Hash32"}}, "data": "Hex"},
  "offchain": {"offchainKind": {"type": "string"}, "idempotencyKey": {"type": "string", "minLength": 1, "maxLength": 128}, "payload": {"type": "string", "description": "the canonical JSON of the kind's payload"}, "submitter": "Hash32", "signature": "Signature64"},
  "anchor": {"state": {"type": "integer", "minimum": 1, "maximum": 5}, "stateName": {"type": "string", "enum": ["broadcast", "confirmed", "final", "dropped", "abandoned"]}, "anchoredSize": "Uint64", "anchoredRoot": "Hash32", "txid": "Hash32", "blockHeight": "Uint64", "blockHash": "Hash32"}
})json";

std::string EventFieldsName(const std::string& kind)
{
    std::string out = "EventFields_";
    out += kind;
    return out;
}

// One schema per event kind ("EventFields_<kind>") and the Event union over them.
void AddEventSchemas(json& components)
{
    json kinds = json::array();
    const json fields = json::parse(kEventFields);
    for (const auto& [kind, members] : fields.items()) {
        json properties = json::object();
        json required = json::array();
        for (const auto& [name, schema] : members.items()) {
            properties[name] = schema.is_string() ? SchemaRef(schema.get<std::string>()) : schema;
            required.push_back(name);
        }
        components[EventFieldsName(kind)] = {{"type", "object"},
                                             {"additionalProperties", false},
                                             {"required", required},
                                             {"properties", properties}};
        // Off-chain and anchor events have no EVM origin; the others always have one.
        const bool on_chain = kind != "offchain" && kind != "anchor";
        json event = {{"type", "object"},
                      {"title", kind},
                      {"additionalProperties", false},
                      {"required", on_chain ? json{"kind", "origin", "fields"} : json{"kind", "fields"}},
                      {"properties",
                       {{"kind", {{"const", kind}}}, {"fields", SchemaRef(EventFieldsName(kind))}}}};
        if (on_chain) event["properties"]["origin"] = SchemaRef("EvmOrigin");
        kinds.push_back(std::move(event));
    }
    components["Event"] = {{"description", "a ledger event decoded for reading; its leaf bytes are the record"},
                           {"oneOf", kinds}};
}

} // namespace

json SchemaRef(std::string_view name)
{
    return {{"$ref", fmt::format("#/components/schemas/{}", name)}};
}

json Nullable(json schema)
{
    return {{"oneOf", json::array({std::move(schema), {{"type", "null"}}})}};
}

const json& SchemaComponents()
{
    static const json components = [] {
        json out = json::parse(kComponents);
        AddEventSchemas(out);
        return out;
    }();
    return components;
}

json ParamSchema(const ParamSpec& param)
{
    if (!param.schema.is_null()) return param.schema;
    switch (param.type) {
    case ParamType::String: return {{"type", "string"}};
    case ParamType::Unsigned: return SchemaRef("Uint64");
    case ParamType::Bool: return {{"type", "boolean"}};
    case ParamType::Object: return {{"type", "object"}};
    case ParamType::Any: return json::object();
    }
    return json::object();
}

json OpenRpcDocument(const Dispatcher& dispatcher)
{
    json methods = json::array();
    for (const auto& m : dispatcher.methods()) {
        json params = json::array();
        for (const auto& p : m.params) {
            params.push_back({{"name", p.name}, {"description", p.help}, {"required", p.required}, {"schema", ParamSchema(p)}});
        }
        methods.push_back({{"name", m.name},
                           {"summary", m.summary},
                           {"paramStructure", "either"},
                           {"params", params},
                           {"result", {{"name", "result"}, {"description", m.result}, {"schema", m.result_schema}}},
                           {"x-access", m.access == Access::Read ? "read" : "write"}});
    }
    return {{"openrpc", "1.2.6"},
            {"info",
             {{"title", "Bitácora JSON-RPC API"},
              {"version", BITACORA_VERSION},
              {"description", "An append-only ledger of escrow and vault events with RFC 9162 proofs anchored in "
                              "Bitcoin. Every hash and byte string is 0x-prefixed hex; amounts and ids are decimal "
                              "strings; lists page with cursor and limit and answer nextCursor (null at the end)."}}},
            {"methods", methods},
            {"components", {{"schemas", SchemaComponents()}}}};
}

} // namespace bitacora::rpc
