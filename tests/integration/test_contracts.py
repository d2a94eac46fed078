"""contracts/ on a real anvil: deploy, drive every order path and vault operation with
the workload generator, and check the chain agrees with what the generator did."""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Anvil, check, main  # noqa: E402

ORDER_STATES = {"complete": 4, "dispute_buyer": 4, "dispute_seller": 5, "cancel": 5, "expire": 5}


def _tools(options):
    sys.path.insert(0, os.path.join(options.contracts, "tools"))
    import deploy  # noqa: E402
    import evm  # noqa: E402
    import workload  # noqa: E402
    return deploy, evm, workload


def test_deploy_writes_addresses_and_block(options, tmp):
    deploy, evm, _ = _tools(options)
    anvil = Anvil(options.contracts, tmp).start()
    try:
        rpc = evm.Rpc(anvil.url)
        out = deploy.deploy(rpc, os.path.join(options.contracts, "out"))
        check(out["chainId"] == 31337, f"chain id {out['chainId']}")
        for name, address in out["contracts"].items():
            code = rpc.call("eth_getCode", address, "latest")
            check(len(code) > 2, f"{name} has no code at {address}")
        block = rpc.call("eth_getBlockByNumber", hex(out["deploymentBlock"]), False)
        check(block["hash"] == out["deploymentBlockHash"], "deployment block hash")
        escrow = evm.Artifact(os.path.join(options.contracts, "out"), "P2PEscrow.sol", "P2PEscrow")
        usdc = rpc.call("eth_call", {"to": out["contracts"]["P2PEscrow"], "data": escrow.calldata("usdc()")}, "latest")
        check(usdc[-40:] == out["contracts"]["MockUSDC"][2:].lower(), "escrow's USDC address")
    finally:
        anvil.stop()


def test_workload_paths_end_in_the_right_states(options, tmp):
    deploy, evm, workload_mod = _tools(options)
    anvil = Anvil(options.contracts, tmp).start()
    try:
        rpc = evm.Rpc(anvil.url)
        artifacts = os.path.join(options.contracts, "out")
        deployment = deploy.deploy(rpc, artifacts)
        generator = workload_mod.Workload(rpc, deployment, artifacts, seed=7, actor_count=12)
        first_block = int(rpc.call("eth_blockNumber"), 16) + 1
        generator.setup()
        orders = []
        for wave in range(3):  # several waves: orders span blocks and time advances between them
            orders += generator._wave(60, 20)
        rpc.call("evm_setAutomine", True)
        last_block = int(rpc.call("eth_blockNumber"), 16)

        paths = {o["path"] for o in orders}
        check(paths == set(ORDER_STATES), f"not every path was exercised: {paths}")
        escrow_art = evm.Artifact(artifacts, "P2PEscrow.sol", "P2PEscrow")
        escrow = deployment["contracts"]["P2PEscrow"]
        calls = [("eth_call", [{"to": escrow, "data": escrow_art.calldata("getOrder(uint256)", evm.enc_uint(o["id"]))},
                               "latest"]) for o in orders]
        for order, result in zip(orders, rpc.batch(calls)):
            words = [int(result[2 + 64 * i:2 + 64 * (i + 1)], 16) for i in range(7)]
            state = words[2]
            check(state == ORDER_STATES[order["path"]], f"order {order['id']} ({order['path']}) in state {state}")
            check(words[0] == int(order["seller"], 16) and words[3] == int(order["buyer"], 16), "order parties")

        usdc_art = evm.Artifact(artifacts, "MockUSDC.sol", "MockUSDC")
        held = rpc.call("eth_call", {"to": deployment["contracts"]["MockUSDC"],
                                     "data": usdc_art.calldata("balanceOf(address)", evm.enc_address(escrow))}, "latest")
        check(int(held, 16) == 0, "every order ended, yet the escrow still holds USDC")

        # eth_getLogs over the whole range sees exactly the events the receipts showed.
        logs = rpc.call("eth_getLogs", {"fromBlock": hex(first_block), "toBlock": hex(last_block),
                                        "address": [escrow, deployment["contracts"]["YieldVault"]]})
        by_kind = {}
        for log in logs:
            name = generator.topics[(log["address"].lower(), log["topics"][0])]
            by_kind[name] = by_kind.get(name, 0) + 1
        check(by_kind == generator.events, f"getLogs {by_kind} != receipts {generator.events}")
        check(by_kind["OrderCreated"] == len(orders), "one OrderCreated per order")
        check(by_kind["Deposit"] > 0 and by_kind["Withdraw"] > 0, "vault deposits and withdrawals happened")
        blocks_with_many = sum(1 for b in range(first_block, last_block + 1)
                               if sum(1 for log in logs if int(log["blockNumber"], 16) == b) >= 20)
        check(blocks_with_many >= 3, "the generator should pack many events per block")
    finally:
        anvil.stop()


def test_workload_command_line_report(options, tmp):
    deploy, evm, _ = _tools(options)
    anvil = Anvil(options.contracts, tmp).start()
    try:
        import subprocess
        deployment_path = os.path.join(tmp, "deployment.json")
        report_path = os.path.join(tmp, "report.json")
        tools = os.path.join(options.contracts, "tools")
        subprocess.run([sys.executable, os.path.join(tools, "deploy.py"), "--rpc", anvil.url,
                        "--out", deployment_path], check=True, capture_output=True, timeout=120)
        subprocess.run([sys.executable, os.path.join(tools, "workload.py"), "--rpc", anvil.url,
                        "--deployment", deployment_path, "--seed", "3", "--orders", "50", "--vault-ops", "10",
                        "--finalize", "64", "--report", report_path], check=True, capture_output=True, timeout=300)
        with open(report_path) as f:
            report = json.load(f)
        check(sum(report["paths"].values()) == 50, f"paths {report['paths']}")
        check(report["events"] == sum(report["eventsByKind"].values()), "event total")
        rpc = evm.Rpc(anvil.url)
        finalized = int(rpc.call("eth_getBlockByNumber", "finalized", False)["number"], 16)
        check(report["lastBlock"] == report["lastWorkloadBlock"] + 64, "--finalize mines 64 blocks")
        check(finalized >= report["lastWorkloadBlock"], "--finalize should leave the workload's blocks final")
        check(rpc.call("eth_getBlockByNumber", "latest", False) is not None, "chain alive")
    finally:
        anvil.stop()


if __name__ == "__main__":
    main([test_deploy_writes_addresses_and_block, test_workload_paths_end_in_the_right_states,
          test_workload_command_line_report])
