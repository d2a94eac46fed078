// -rpcallowip: the clients the API answers besides loopback, as bitcoind's: an address
// (1.2.3.4, fd00::1), a CIDR subnet (10.0.0.0/8, fd00::/8) or an address with a mask
// (10.0.0.0/255.0.0.0).
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace bitacora::rpc {

struct Subnet {
    bool v6{false};
    std::array<uint8_t, 16> network{}; // v4 in the first four bytes
    std::array<uint8_t, 16> mask{};
    bool Contains(std::string_view address) const;
};

std::optional<Subnet> ParseSubnet(std::string_view text);
// 127.0.0.0/8 and ::1 (also as ::ffff:127.x.y.z).
bool IsLoopbackAddress(std::string_view address);
// Whether a -rpcbind value listens on loopback only ("localhost" included).
bool IsLoopbackBind(std::string_view bind);

} // namespace bitacora::rpc
