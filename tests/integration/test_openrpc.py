"""rpc_discover against real answers (issue 13): a daemon following a real anvil and the
regtest bitcoind (double, or BITCOIND) with anchors in Bitcoin and off-chain events is
asked every method of the table with real data, and each answer is validated with
python3-jsonschema against the schema the daemon's own OpenRPC document gives for it, as
a TypeScript or Go client generating its types from that document would rely on. Every
event of the log is validated against the Event schema too."""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from btc_node import BtcNode  # noqa: E402
from evm_chain import Platform, start_follower, wait_synced_at  # noqa: E402
from harness import check, main, wait_for  # noqa: E402
from test_api import Api, rpcauth  # noqa: E402
from test_btc_anchor import WALLET, Signer  # noqa: E402

import jsonschema  # noqa: E402  (Debian: python3-jsonschema)

CONFIRMATIONS = 2


class Schemas:
    """Validates values against the document's schemas, its components resolvable by $ref."""

    def __init__(self, doc):
        self.components = doc["components"]
        for name, schema in self.components["schemas"].items():
            jsonschema.Draft7Validator.check_schema(schema)  # each one is a valid draft 7 schema

    def errors(self, value, schema):
        root = {"components": self.components, "allOf": [schema]}
        validator = jsonschema.Draft7Validator(root, format_checker=jsonschema.FormatChecker())
        return [f"{'/'.join(map(str, e.absolute_path))}: {e.message[:300]}" for e in validator.iter_errors(value)]

    def check(self, value, schema, what):
        errors = self.errors(value, schema)
        check(not errors, f"{what} does not conform to its schema: {errors[:3]}")


def _call(api, method, params):
    """Positional (a list) or named (a dict) params."""
    status, answer = api.post({"jsonrpc": "2.0", "id": 1, "method": method, "params": params})
    check(status == 200 and "result" in answer, f"{method} {json.dumps(params)[:200]}: {status} {answer}")
    return answer["result"]


def _anchor_until_final(api, node, address, anchor_id):
    check(api.call("admin_anchorNow")["anchored"], f"anchor {anchor_id} sent")
    node.rpc("generatetoaddress", CONFIRMATIONS, address)
    return wait_for(lambda: (lambda a: a if a["state"] == "final" else None)(api.call("ledger_getAnchor", anchor_id)),
                    60, f"anchor {anchor_id} final")


def _calls(api, tmp, signer, account, order_id, size):
    """(method, params) for every method, with values taken from the live ledger."""
    position_owner = next(e["event"]["fields"]["owner"] for e in api.call("ledger_getEvents", 0, 1000)["events"]
                          if e["event"]["kind"] == "vault_deposit")
    first_page = api.call("escrow_getOrders", {}, None, 3)
    return [
        ("bitacora_status", []),
        ("escrow_getOrder", [order_id]),
        ("escrow_getOrder", [order_id, False]),
        ("escrow_getReputation", [account]),
        ("vault_getPosition", [position_owner]),
        ("escrow_getOrders", [{}, None, 3]),
        ("escrow_getOrders", [{}, first_page["nextCursor"], 3, True]),
        ("escrow_getOrders", [{"seller": account, "state": "complete"}, None, 1000]),
        ("escrow_getOrderEvents", [order_id]),
        ("escrow_getOrderEvents", [order_id, "1", 1]),
        ("ledger_getEventsByAccount", [account, None, 5]),
        ("ledger_getEvents", [0, 1000]),
        ("ledger_getEvents", [None, 10, 3, 9]),
        ("ledger_getEvents", [size]),
        ("ledger_getTotals", []),
        ("ledger_getTotals", [True]),
        ("ledger_getEvent", [size - 1]),
        ("ledger_getCheckpoint", []),
        ("ledger_getInclusionProof", [3]),
        ("ledger_getInclusionProof", [3, 10]),
        ("ledger_getConsistencyProof", [7, size]),
        ("ledger_getProofBundle", [0]),
        ("ledger_getProofBundle", [size - 1]),
        ("ledger_getAnchors", []),
        ("ledger_getAnchors", [None, 1]),
        ("ledger_getAnchor", [1]),
        ("ledger_getAnchor", [2]),
        ("admin_checkLedger", []),
        ("admin_anchorNow", []),
        ("admin_backup", [os.path.join(tmp, "backup")]),
        ("ledger_submitEvent", signer.sign()),
        ("rpc_methods", []),
        ("rpc_discover", []),
        ("rpc.discover", []),
    ]


def test_every_method_answers_as_rpc_discover_says(options, tmp):
    node = BtcNode()
    node.start(os.path.join(tmp, "bitcoind"))
    platform = None
    daemon = None
    try:
        node.rpc("createwallet", WALLET)
        address = node.rpc("getnewaddress", wallet=WALLET)
        node.rpc("generatetoaddress", 101, address)
        signer = Signer(options, tmp)
        platform = Platform(options, tmp, seed=31)
        platform.waves(2)
        platform.mine(70)
        datadir = os.path.join(tmp, "node")
        daemon = start_follower(options, platform, datadir, extra=[
            "-rpcport=0", f"-rpcauth={rpcauth('u', 'p')}", f"-backendkey={signer.pubkey}",
            f"-btcrpcconnect=127.0.0.1:{node.rpc_port}", f"-btcrpccookiefile={node.cookie_path}", f"-btcwallet={WALLET}",
            f"-btcstartheight={node.rpc('getblockcount') + 1}", "-anchor=0", f"-anchorconfirmations={CONFIRMATIONS}",
            "-btcpollinterval=200"])
        wait_synced_at(datadir, platform, daemon=daemon)
        api = Api(datadir)
        # Two anchors in Bitcoin (the second carries a consistency proof), off-chain events between.
        for _ in range(2):
            _call(api, "ledger_submitEvent", signer.sign())
        first = _anchor_until_final(api, node, address, 1)
        _call(api, "ledger_submitEvent", signer.sign())
        second = _anchor_until_final(api, node, address, 2)
        check(second["treeSize"] > first["treeSize"], "the second anchor covers more")

        doc = api.call("rpc_discover")
        schemas = Schemas(doc)
        methods = {m["name"]: m for m in doc["methods"]}
        check(set(methods) == {m["name"] for m in api.call("rpc_methods")}, "rpc_discover lists the method table")
        size = api.call("bitacora_status")["ledger"]["size"]
        orders = api.call("escrow_getOrders", {"state": "complete"}, None, 1)["orders"]
        check(orders, "a complete order")
        calls = _calls(api, tmp, signer, orders[0]["seller"], orders[0]["orderId"], size)
        called = set()
        for method, params in calls:
            spec = methods[method]
            given = dict(params) if isinstance(params, dict) else {p["name"]: v for p, v in zip(spec["params"], params)}
            for p in spec["params"]:
                if given.get(p["name"]) is not None:
                    schemas.check(given[p["name"]], p["schema"], f"{method} param {p['name']}={given[p['name']]!r}")
                check(not p["required"] or p["name"] in given, f"{method}: required {p['name']} given")
            result = _call(api, method, params)
            schemas.check(result, spec["result"]["schema"], f"{method}{json.dumps(params)[:80]}'s answer")
            called.add(method)
        check(called == set(methods), f"every method called: missing {set(methods) - called}")

        # Every event of the log, page by page, against the Event schema: every kind there is.
        kinds, cursor, seen = set(), None, 0
        while True:
            page = api.call("ledger_getEvents", None, 1000, None, None, cursor)
            for item in page["events"]:
                schemas.check(item["event"], {"$ref": "#/components/schemas/Event"}, f"event {item['index']}")
                kinds.add(item["event"]["kind"])
            seen += len(page["events"])
            cursor = page["nextCursor"]
            if cursor is None:
                break
        check(seen == api.call("bitacora_status")["ledger"]["size"], "every event was read")
        check({"order_created", "vault_deposit", "offchain", "anchor"} <= kinds, f"kinds validated: {sorted(kinds)}")
        print(f"{len(calls)} calls of {len(methods)} methods and {seen} events ({len(kinds)} kinds) conform", flush=True)

        # The schemas are not vacuous: a changed answer fails them.
        bundle = api.call("ledger_getProofBundle", 0)
        bundle["anchor"]["txid"] = bundle["anchor"]["txid"][2:]
        check(schemas.errors(bundle, methods["ledger_getProofBundle"]["result"]["schema"]), "an unprefixed txid fails")
        page = api.call("ledger_getAnchors")
        page["next"] = 3
        check(schemas.errors(page, methods["ledger_getAnchors"]["result"]["schema"]), "an unknown member fails")
    finally:
        if daemon:
            daemon.stop()
        if platform:
            platform.stop()
        node.stop()


if __name__ == "__main__":
    main([test_every_method_answers_as_rpc_discover_says])
