// RPC authentication as bitcoind does it: a cookie file written at each start (mode
// 0600, "__cookie__:<random hex>") for local clients, and salted credentials in the
// config, -rpcauth=<user>:<salt>$<hmac>, where hmac = HMAC-SHA256(key=salt, password)
// in hex (share/rpcauth/rpcauth.py's format), so no password is stored.
#pragma once

#include "common/result.h"

#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

namespace bitacora::rpc {

inline constexpr std::string_view kCookieUser = "__cookie__";

class Authenticator {
public:
    // Writes a fresh cookie (replacing an old one) and accepts it from now on.
    Status WriteCookie(const std::filesystem::path& path);
    void RemoveCookie();
    // "<user>:<salt>$<hmac hex>"
    Status AddRpcAuth(std::string_view entry);
    // An HTTP Authorization header ("Basic base64(user:password)").
    bool Check(std::string_view authorization) const;
    bool has_credentials() const { return !m_cookie.empty() || !m_entries.empty(); }

private:
    struct Entry {
        std::string user;
        std::string salt;
        std::string hmac_hex;
    };
    std::string m_cookie; // "__cookie__:<hex>"
    std::filesystem::path m_cookie_path;
    std::vector<Entry> m_entries;
};

// HMAC-SHA256(key, message) in lower-case hex.
std::string HmacSha256Hex(std::string_view key, std::string_view message);

} // namespace bitacora::rpc
