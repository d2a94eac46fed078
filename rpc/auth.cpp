#include "rpc/auth.h"

#include "common/hex.h"

#include <fmt/format.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <unistd.h>

namespace bitacora::rpc {
namespace {

bool ConstantTimeEqual(std::string_view a, std::string_view b)
{
    return a.size() == b.size() && CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

std::optional<std::string> Base64Decode(std::string_view text)
{
    if (text.size() % 4 != 0 || text.size() > 4096) return std::nullopt;
    std::string out(text.size() / 4 * 3, '\0');
    const int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                                  reinterpret_cast<const unsigned char*>(text.data()), static_cast<int>(text.size()));
    if (n < 0) return std::nullopt;
    size_t length = static_cast<size_t>(n);
    // EVP_DecodeBlock keeps the bytes the padding stands for: drop them.
    if (!text.empty() && text.back() == '=') --length;
    if (text.size() > 1 && text[text.size() - 2] == '=') --length;
    out.resize(length);
    return out;
}

} // namespace

std::string HmacSha256Hex(std::string_view key, std::string_view message)
{
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int length = 0;
    HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()), reinterpret_cast<const unsigned char*>(message.data()),
         message.size(), digest, &length);
    return HexEncode(std::span<const uint8_t>(digest, length));
}

Status Authenticator::WriteCookie(const std::filesystem::path& path)
{
    uint8_t secret[32];
    if (RAND_bytes(secret, sizeof(secret)) != 1) return Error{"cannot make a random cookie"};
    const std::string cookie = fmt::format("{}:{}", kCookieUser, HexEncode(secret));
    const std::filesystem::path tmp = path.string() + ".tmp";
    ::unlink(tmp.c_str());
    const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) return Error{fmt::format("cannot write the RPC cookie {}: {}", tmp.string(), std::strerror(errno))};
    const bool written = ::write(fd, cookie.data(), cookie.size()) == static_cast<ssize_t>(cookie.size());
    ::close(fd);
    if (!written || ::rename(tmp.c_str(), path.c_str()) != 0) {
        return Error{fmt::format("cannot write the RPC cookie {}: {}", path.string(), std::strerror(errno))};
    }
    m_cookie = cookie;
    m_cookie_path = path;
    return {};
}

void Authenticator::RemoveCookie()
{
    if (!m_cookie_path.empty()) ::unlink(m_cookie_path.c_str());
    m_cookie_path.clear();
}

Status Authenticator::AddRpcAuth(std::string_view entry)
{
    const size_t colon = entry.find(':');
    const size_t dollar = entry.find('$', colon == std::string_view::npos ? 0 : colon);
    if (colon == std::string_view::npos || dollar == std::string_view::npos || colon == 0 || dollar == colon + 1) {
        return Error{"-rpcauth must be <user>:<salt>$<hmac>"};
    }
    Entry parsed{std::string(entry.substr(0, colon)), std::string(entry.substr(colon + 1, dollar - colon - 1)),
                 std::string(entry.substr(dollar + 1))};
    if (parsed.hmac_hex.size() != 64 || !HexDecode(parsed.hmac_hex)) return Error{"-rpcauth hmac must be 64 hex digits"};
    for (auto& c : parsed.hmac_hex) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    m_entries.push_back(std::move(parsed));
    return {};
}

bool Authenticator::Check(std::string_view authorization) const
{
    constexpr std::string_view kBasic = "Basic ";
    if (!authorization.starts_with(kBasic)) return false;
    const auto decoded = Base64Decode(authorization.substr(kBasic.size()));
    if (!decoded) return false;
    bool ok = !m_cookie.empty() && ConstantTimeEqual(*decoded, m_cookie);
    const size_t colon = decoded->find(':');
    if (colon != std::string::npos) {
        const std::string_view user = std::string_view(*decoded).substr(0, colon);
        const std::string_view password = std::string_view(*decoded).substr(colon + 1);
        for (const auto& entry : m_entries) {
            // Every entry is checked, so the time taken does not tell which user exists.
            const bool match = ConstantTimeEqual(user, entry.user) &&
                               ConstantTimeEqual(HmacSha256Hex(entry.salt, password), entry.hmac_hex);
            ok = ok || match;
        }
    }
    return ok;
}

} // namespace bitacora::rpc
