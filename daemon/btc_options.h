// The -btc* and -anchor* options of bitacorad: the bitcoind connection, the block
// follower and the anchoring state machine.
#pragma once

#include "common/result.h"
#include "daemon/args.h"
#include "indexer/btc/anchorer.h"
#include "indexer/btc/bitcoind_rpc.h"
#include "indexer/btc/follower.h"

#include <optional>
#include <string>

namespace bitacora {

void RegisterBtcArgs(ArgsManager& args);

struct BtcConfig {
    btc::BitcoindRpcOptions rpc;
    btc::BtcFollowerOptions follower;
    btc::AnchorerOptions anchorer;
};

// nullopt without -btcrpcconnect (the Bitcoin side is off). `chain` picks the default
// port and cookie of the Bitcoin network paired with it (base: main, base-sepolia:
// testnet4, regtest: regtest).
Result<std::optional<BtcConfig>> BtcConfigFromArgs(const ArgsManager& args, const std::string& chain);

} // namespace bitacora
