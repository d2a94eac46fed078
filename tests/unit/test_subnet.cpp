#include "rpc/subnet.h"

#include <doctest/doctest.h>

using namespace bitacora::rpc;

TEST_CASE("-rpcallowip subnets: addresses, CIDR and masks, IPv4 and IPv6")
{
    const auto one = ParseSubnet("192.0.2.7");
    REQUIRE(one);
    CHECK(one->Contains("192.0.2.7"));
    CHECK_FALSE(one->Contains("192.0.2.8"));
    CHECK(one->Contains("::ffff:192.0.2.7")); // a dual-stack listener's view of an IPv4 client

    const auto cidr = ParseSubnet("10.1.0.0/16");
    REQUIRE(cidr);
    CHECK(cidr->Contains("10.1.255.3"));
    CHECK_FALSE(cidr->Contains("10.2.0.1"));
    const auto masked = ParseSubnet("10.1.0.0/255.255.0.0");
    REQUIRE(masked);
    CHECK(masked->Contains("10.1.9.9"));
    CHECK_FALSE(masked->Contains("11.1.9.9"));
    const auto all = ParseSubnet("0.0.0.0/0");
    REQUIRE(all);
    CHECK(all->Contains("203.0.113.5"));
    CHECK_FALSE(all->Contains("fd00::1")); // an IPv4 subnet holds no IPv6 address

    const auto v6 = ParseSubnet("fd00::/8");
    REQUIRE(v6);
    CHECK(v6->Contains("fd00::2"));
    CHECK(v6->Contains("fdff:1::9"));
    CHECK_FALSE(v6->Contains("fe80::1"));
    CHECK_FALSE(v6->Contains("10.0.0.1"));

    for (const char* bad : {"", "10.0.0.0/33", "fd00::/129", "10.0.0.0/", "10.0.0.0/x", "host.example", "10.0.0.0/ffff::",
                            "1.2.3"}) {
        CHECK_MESSAGE(!ParseSubnet(bad), bad);
    }
}

TEST_CASE("loopback addresses and binds")
{
    for (const char* loopback : {"127.0.0.1", "127.3.2.1", "::1", "::ffff:127.0.0.1"}) CHECK_MESSAGE(IsLoopbackAddress(loopback), loopback);
    for (const char* other : {"0.0.0.0", "::", "192.0.2.2", "fd00::1", "128.0.0.1", "nonsense"}) CHECK_MESSAGE(!IsLoopbackAddress(other), other);
    CHECK(IsLoopbackBind("localhost"));
    CHECK(IsLoopbackBind("127.0.0.1"));
    CHECK_FALSE(IsLoopbackBind("0.0.0.0"));
    CHECK_FALSE(IsLoopbackBind("::"));
}
