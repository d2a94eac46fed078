#include "rpc/methods.h"

#include "common/hex.h"
#include "rpc/ledger_json.h"
#include "rpc/offchain.h"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>

namespace bitacora::rpc {
namespace {

using nlohmann::json;

UInt256 OrderId(const Params& params, size_t i)
{
    const auto id = UInt256::FromDecimal(params.String(i));
    if (!id) throw RpcException{kInvalidParams, "orderId must be a decimal integer below 2^256"};
    return *id;
}

ledger::Address AddressParam(const Params& params, size_t i, std::string_view name)
{
    ledger::Address out{};
    const std::string text = params.String(i);
    if (text.size() != 42 || !HexDecodeExact(text, out)) {
        throw RpcException{kInvalidParams, fmt::format("{} must be a 0x-prefixed 20-byte hex address", name)};
    }
    return out;
}

// A record read with and without the pending overlay: "final" when they agree.
template <typename T, typename Encode>
json WithStatus(const std::optional<T>& final_view, const std::optional<T>& pending_view, bool include_pending, Encode encode)
{
    const auto& shown = include_pending ? pending_view : final_view;
    if (!shown) return nullptr;
    json out = encode(*shown);
    const bool same = final_view && pending_view && final_view->Encode() == pending_view->Encode();
    out["status"] = !include_pending || same ? "final" : "pending";
    return out;
}

const ParamSpec kIncludePending{"includePending", ParamType::Bool, false,
                                "true (default): include unfinalized blocks and say \"pending\" where they change the record"};

} // namespace

void RegisterMethods(Dispatcher& d, MethodContext context)
{
    ledger::Ledger& ledger = *context.ledger;

    d.Add({.name = "bitacora_status",
           .summary = "The ledger's size and root, and each source's sync heights (final and pending), reorgs and "
                      "reconciliation.",
           .result = "{ledger: {size, root, checkpointKey}, sources: {evm: {...}}}",
           .handler = [&ledger, sources = context.sources](const Params&) -> json {
               json out = {{"ledger", {{"size", ledger.size()}, {"root", HexEncode(ledger.root())}}}};
               if (auto key = ledger.checkpoint_public_key()) out["ledger"]["checkpointKey"] = HexEncode(*key);
               out["sources"] = sources ? sources() : json::object();
               return out;
           }});

    d.Add({.name = "escrow_getOrder",
           .params = {{"orderId", ParamType::String, true, "decimal order id"}, kIncludePending},
           .summary = "One order: its state, parties, amount and the ledger indices of its events.",
           .result = "order object with status \"final\" or \"pending\"; error -32001 if unknown",
           .handler = [&ledger](const Params& p) -> json {
               const UInt256 id = OrderId(p, 0);
               const bool pending = p.Bool(1, true);
               json out = WithStatus(ledger.GetOrder(id, false), pending ? ledger.GetOrder(id, true) : std::nullopt,
                                     pending, OrderJson);
               if (out.is_null()) throw RpcException{kNotFound, fmt::format("no order {}", id.ToDecimal())};
               return out;
           }});

    d.Add({.name = "escrow_getReputation",
           .params = {{"seller", ParamType::String, true, "seller address"}, kIncludePending},
           .summary = "A seller's reputation, 0 to 100 (50 before any order).",
           .result = "{seller, reputation, status}",
           .handler = [&ledger](const Params& p) -> json {
               const auto seller = AddressParam(p, 0, "seller");
               const bool pending = p.Bool(1, true);
               const auto final_view = ledger.GetReputation(seller, false);
               const auto shown = pending ? ledger.GetReputation(seller, true) : final_view;
               return {{"seller", HexEncode0x(seller)},
                       {"reputation", shown.value_or(50)},
                       {"status", !pending || shown == final_view ? "final" : "pending"}};
           }});

    d.Add({.name = "vault_getPosition",
           .params = {{"owner", ParamType::String, true, "owner address"}, kIncludePending},
           .summary = "A vault position: shares, assets in and out, cost basis and realized yield.",
           .result = "position object with status; error -32001 if the owner never held shares",
           .handler = [&ledger](const Params& p) -> json {
               const auto owner = AddressParam(p, 0, "owner");
               const bool pending = p.Bool(1, true);
               json out = WithStatus(ledger.GetPosition(owner, false), pending ? ledger.GetPosition(owner, true) : std::nullopt,
                                     pending, PositionJson);
               if (out.is_null()) throw RpcException{kNotFound, fmt::format("no position of {}", HexEncode0x(owner))};
               out["owner"] = HexEncode0x(owner);
               return out;
           }});

    d.Add({.name = "ledger_getTotals",
           .params = {kIncludePending},
           .summary = "Totals over the projections: USDC locked in open orders, vault flows and shares, counts.",
           .result = "totals object with status",
           .handler = [&ledger](const Params& p) -> json {
               const bool pending = p.Bool(0, false);
               json out = TotalsJson(ledger.GetTotals(pending));
               out["status"] = pending ? "pending" : "final";
               return out;
           }});

    d.Add({.name = "ledger_getEvent",
           .params = {{"index", ParamType::Unsigned, true, "ledger index, from 0"}},
           .summary = "One event of the final log with its canonical leaf bytes.",
           .result = "{index, event, leaf, status: \"final\"}; error -32001 past the end",
           .handler = [&ledger](const Params& p) -> json {
               const uint64_t index = p.Unsigned(0);
               const auto leaf = ledger.GetLeaf(index);
               if (!leaf) throw RpcException{kNotFound, leaf.error()};
               const auto event = ledger::DecodeEvent(*leaf);
               if (!event) throw RpcException{kInternalError, "stored leaf does not decode: " + event.error()};
               return {{"index", index}, {"event", EventJson(*event)}, {"leaf", HexEncode(*leaf)}, {"status", "final"}};
           }});

    d.Add({.name = "ledger_getCheckpoint",
           .summary = "A checkpoint of the log as it is now: tree size, root and time, signed (BIP-340) with the "
                      "operator key.",
           .result = "{treeSize, root, timestamp, publicKey, signature}",
           .handler = [&ledger](const Params&) -> json {
               const auto now = std::chrono::duration_cast<std::chrono::seconds>(
                   std::chrono::system_clock::now().time_since_epoch());
               auto checkpoint = ledger.SignCheckpoint(static_cast<uint64_t>(now.count()));
               if (!checkpoint) throw RpcException{kNotAvailable, checkpoint.error()};
               return CheckpointJson(*checkpoint);
           }});

    d.Add({.name = "ledger_getInclusionProof",
           .params = {{"index", ParamType::Unsigned, true, "ledger index of the event"},
                      {"treeSize", ParamType::Unsigned, false, "tree size to prove against (default: the current size)"}},
           .summary = "RFC 9162 inclusion proof of an event in the tree of the given size.",
           .result = "{index, treeSize, leaf, path: [hex], root}",
           .handler = [&ledger](const Params& p) -> json {
               const uint64_t size = p.Has(1) ? p.Unsigned(1) : ledger.size();
               auto proof = ledger.ProveInclusion(p.Unsigned(0), size);
               if (!proof) throw RpcException{kNotFound, proof.error()};
               json path = json::array();
               for (const auto& node : proof->path) path.push_back(HexEncode(node));
               return {{"index", proof->index}, {"treeSize", proof->tree_size}, {"leaf", HexEncode(proof->leaf)},
                       {"path", path}, {"root", HexEncode(proof->root)}};
           }});

    d.Add({.name = "ledger_getConsistencyProof",
           .params = {{"firstSize", ParamType::Unsigned, true, "the older tree size"},
                      {"secondSize", ParamType::Unsigned, false, "the newer tree size (default: the current size)"}},
           .summary = "RFC 9162 consistency proof: the tree of firstSize is a prefix of the tree of secondSize.",
           .result = "{firstSize, secondSize, firstRoot, secondRoot, path: [hex]}",
           .handler = [&ledger](const Params& p) -> json {
               const uint64_t first = p.Unsigned(0);
               const uint64_t second = p.Has(1) ? p.Unsigned(1) : ledger.size();
               auto proof = ledger.ProveConsistency(first, second);
               if (!proof) throw RpcException{kNotFound, proof.error()};
               auto first_root = ledger.RootAt(first);
               auto second_root = ledger.RootAt(second);
               if (!first_root || !second_root) throw RpcException{kNotFound, "no such tree size"};
               json path = json::array();
               for (const auto& node : *proof) path.push_back(HexEncode(node));
               return {{"firstSize", first}, {"secondSize", second}, {"firstRoot", HexEncode(*first_root)},
                       {"secondRoot", HexEncode(*second_root)}, {"path", path}};
           }});

    d.Add({.name = "ledger_getProofBundle",
           .params = {{"index", ParamType::Unsigned, true, "ledger index of the event"}},
           .summary = "What an auditor needs to check one event offline: the event, its leaf, an inclusion proof to "
                      "a freshly signed checkpoint, and the checkpoint (bitacora-cli verifyproof checks it).",
           .result = "{version: 1, index, event, proof: {index, treeSize, leaf, path, root}, checkpoint}",
           .handler = [&ledger](const Params& p) -> json {
               const uint64_t index = p.Unsigned(0);
               const auto now = std::chrono::duration_cast<std::chrono::seconds>(
                   std::chrono::system_clock::now().time_since_epoch());
               auto checkpoint = ledger.SignCheckpoint(static_cast<uint64_t>(now.count()));
               if (!checkpoint) throw RpcException{kNotAvailable, checkpoint.error()};
               auto proof = ledger.ProveInclusion(index, checkpoint->tree_size);
               if (!proof) throw RpcException{kNotFound, proof.error()};
               const auto event = ledger::DecodeEvent(proof->leaf);
               if (!event) throw RpcException{kInternalError, "stored leaf does not decode: " + event.error()};
               json path = json::array();
               for (const auto& node : proof->path) path.push_back(HexEncode(node));
               return {{"version", 1},
                       {"index", index},
                       {"event", EventJson(*event)},
                       {"proof", {{"index", proof->index}, {"treeSize", proof->tree_size}, {"leaf", HexEncode(proof->leaf)},
                                  {"path", path}, {"root", HexEncode(proof->root)}}},
                       {"checkpoint", CheckpointJson(*checkpoint)}};
           }});

    d.Add({.name = "ledger_submitEvent",
           .access = Access::Write,
           .params = {{"kind", ParamType::String, true, "offer.posted, offer.matched, offer.cancelled or dispute.note"},
                      {"idempotencyKey", ParamType::String, true, "1 to 128 bytes; a retry with the same key and event "
                                                                  "returns the first index"},
                      {"payload", ParamType::Object, true, "the kind's fields, string values only"},
                      {"submitter", ParamType::String, true, "the backend's x-only public key (hex), one of -backendkey"},
                      {"signature", ParamType::String, true, "BIP-340 signature (hex) of the off-chain signing hash"}},
           .summary = "Appends an off-chain event of the platform's backend to the final log, once per idempotency key; "
                      "the ledger is fsynced before the answer.",
           .result = "{index, idempotencyKey, status: \"final\"}; -32602 schema or signature, -32005 key reused for "
                     "another event, -32006 submitter not configured",
           .handler = [&ledger, keys = context.backend_keys](const Params& p) -> json {
               if (keys.empty()) throw RpcException{kNotAvailable, "off-chain submission is off: no -backendkey configured"};
               ledger::OffchainEvent event;
               event.kind = p.String(0);
               event.idempotency_key = p.String(1);
               auto payload = CanonicalOffchainPayload(event.kind, p[2]);
               if (!payload) throw RpcException{kInvalidParams, payload.error()};
               event.payload.assign(payload->begin(), payload->end());
               if (!HexDecodeExact(p.String(3), event.submitter)) {
                   throw RpcException{kInvalidParams, "submitter must be a 32-byte hex x-only key"};
               }
               if (std::find(keys.begin(), keys.end(), event.submitter) == keys.end()) {
                   throw RpcException{kForbidden, "submitter is not a configured backend key (-backendkey)"};
               }
               if (!HexDecodeExact(p.String(4), event.signature)) {
                   throw RpcException{kInvalidParams, "signature must be 64 bytes of hex"};
               }
               if (event.idempotency_key.empty() || event.idempotency_key.size() > 128) {
                   throw RpcException{kInvalidParams, "idempotencyKey must be 1 to 128 bytes"};
               }
               if (!ledger::VerifySchnorr(event.submitter, ledger::OffchainSigningHash(event), event.signature)) {
                   throw RpcException{kInvalidParams, "signature does not verify for the submitter key"};
               }
               auto index = ledger.AppendOffchain(event);
               if (!index) {
                   if (index.error().find("already used") != std::string::npos) throw RpcException{kConflict, index.error()};
                   throw RpcException{kInternalError, index.error()};
               }
               return {{"index", *index}, {"idempotencyKey", event.idempotency_key}, {"status", "final"}};
           }});

    d.Add({.name = "rpc_methods",
           .summary = "Every method with its params, access and summary (what bitacora-cli help prints).",
           .result = "[{name, access, params: [{name, type, required, help}], summary, result}]",
           .handler = [&d](const Params&) -> json {
               json out = json::array();
               for (const auto& m : d.methods()) {
                   json params = json::array();
                   for (const auto& p : m.params) {
                       static constexpr const char* kTypes[] = {"string", "unsigned", "bool", "object", "any"};
                       params.push_back({{"name", p.name}, {"type", kTypes[static_cast<int>(p.type)]},
                                         {"required", p.required}, {"help", p.help}});
                   }
                   out.push_back({{"name", m.name}, {"access", m.access == Access::Read ? "read" : "write"},
                                  {"params", params}, {"summary", m.summary}, {"result", m.result}});
               }
               return out;
           }});
}

} // namespace bitacora::rpc
