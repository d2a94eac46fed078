#include "common/result.h"

namespace bitacora {

std::string_view ErrorKindName(ErrorKind kind)
{
    switch (kind) {
    case ErrorKind::Other: return "other";
    case ErrorKind::Invalid: return "invalid";
    case ErrorKind::Conflict: return "conflict";
    case ErrorKind::TooLarge: return "too_large";
    case ErrorKind::NotFound: return "not_found";
    case ErrorKind::ReadOnly: return "read_only";
    case ErrorKind::Io: return "io";
    case ErrorKind::Corrupt: return "corrupt";
    case ErrorKind::Upstream: return "upstream";
    case ErrorKind::Stopped: return "stopped";
    }
    return "other";
}

} // namespace bitacora
