#!/usr/bin/env python3
"""Deploys the platform's contracts to a local anvil and writes their addresses and
the deployment block to a JSON file, which bitacorad's config and the tests read.

    deploy.py --rpc http://127.0.0.1:8545 --out deployments/anvil.json

Uses anvil's first two unlocked accounts: the first deploys and administers (admin
and pauser of the escrow, owner of the pool), the second is the escrow's arbiter.
Local chains get MockUSDC and MockAavePool; the vault and escrow are the real code."""

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from evm import ARTIFACTS_DEFAULT, Artifact, Rpc, RpcError, enc_address, enc_uint  # noqa: E402

RATE_DEFAULT_RAY = 5 * 10**25  # 5 %/year


def _deploy(rpc, sender, artifact, *encoded_args):
    tx_hash = rpc.call("eth_sendTransaction", {
        "from": sender, "data": "0x" + artifact.bytecode[2:] + "".join(encoded_args), "gas": hex(8_000_000)})
    receipt = rpc.call("eth_getTransactionReceipt", tx_hash)
    if receipt is None:
        rpc.call("evm_mine")
        receipt = rpc.call("eth_getTransactionReceipt", tx_hash)
    if receipt is None or int(receipt["status"], 16) != 1:
        raise RpcError(f"deploying {artifact.name} failed: {receipt}")
    return receipt["contractAddress"], int(receipt["blockNumber"], 16)


def deploy(rpc, artifacts_dir=ARTIFACTS_DEFAULT, rate_ray=RATE_DEFAULT_RAY):
    accounts = rpc.call("eth_accounts")
    if len(accounts) < 2:
        raise RpcError("the node must offer two unlocked accounts (anvil does)")
    deployer, arbiter = accounts[0], accounts[1]
    usdc_art = Artifact(artifacts_dir, "MockUSDC.sol", "MockUSDC")
    pool_art = Artifact(artifacts_dir, "MockAavePool.sol", "MockAavePool")
    vault_art = Artifact(artifacts_dir, "YieldVault.sol", "YieldVault")
    escrow_art = Artifact(artifacts_dir, "P2PEscrow.sol", "P2PEscrow")

    usdc, first_block = _deploy(rpc, deployer, usdc_art)
    pool, _ = _deploy(rpc, deployer, pool_art, enc_address(usdc), enc_uint(rate_ray))
    a_token = "0x" + rpc.call("eth_call", {"to": pool, "data": pool_art.calldata("aToken()")}, "latest")[-40:]
    vault, _ = _deploy(rpc, deployer, vault_art, enc_address(usdc), enc_address(pool), enc_address(a_token))
    escrow, last_block = _deploy(rpc, deployer, escrow_art, enc_address(usdc), enc_address(deployer),
                                 enc_address(arbiter))
    return {
        "chainId": int(rpc.call("eth_chainId"), 16),
        "deploymentBlock": first_block,
        "deploymentBlockHash": rpc.call("eth_getBlockByNumber", hex(first_block), False)["hash"],
        "lastDeploymentBlock": last_block,
        "deployer": deployer,
        "arbiter": arbiter,
        "poolRatePerYearRay": str(rate_ray),
        "contracts": {
            "P2PEscrow": escrow,
            "YieldVault": vault,
            "MockUSDC": usdc,
            "MockAavePool": pool,
            "MockAToken": a_token,
        },
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rpc", default="http://127.0.0.1:8545")
    parser.add_argument("--artifacts", default=ARTIFACTS_DEFAULT, help="forge's out/ directory")
    parser.add_argument("--rate-ray", type=int, default=RATE_DEFAULT_RAY, help="pool interest per year, 1e27 = 100 %%")
    parser.add_argument("--out", required=True, help="JSON file to write")
    args = parser.parse_args()
    rpc = Rpc(args.rpc)
    result = deploy(rpc, args.artifacts, args.rate_ray)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(result, f, indent=2)
        f.write("\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
