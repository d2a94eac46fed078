// The -evm* options of bitacorad and the follower options they make.
#pragma once

#include "common/result.h"
#include "daemon/args.h"
#include "indexer/evm/follower.h"

#include <filesystem>
#include <optional>

namespace bitacora {

void RegisterEvmArgs(ArgsManager& args);

// nullopt when no -evmrpc is set (the follower is off); an error names the bad option.
Result<std::optional<evm::FollowerOptions>> EvmOptionsFromArgs(const ArgsManager& args, uint64_t default_chain_id,
                                                               const std::filesystem::path& netdir);

} // namespace bitacora
