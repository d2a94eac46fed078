// bitacorad start-up and shutdown, split from main() so tests can check the option table.
#pragma once

#include "daemon/args.h"

#include <cstdint>
#include <string>
#include <vector>

namespace bitacora {

// The chains bitacorad can follow; each is a [section] of the config file and a
// subdirectory of the data dir (none for the default, as bitcoind does for main).
struct ChainInfo {
    std::string name;
    std::string datadir_subdir;
    std::string description;
    uint64_t evm_chain_id{0}; // what -evmchainid defaults to
    uint16_t rpc_port{0};     // what -rpcport defaults to
};
const std::vector<ChainInfo>& Chains();

void RegisterDaemonArgs(ArgsManager& args);

// Runs bitacorad; returns the process exit code.
int DaemonMain(int argc, char* argv[]);

} // namespace bitacora
