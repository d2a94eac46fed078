// The Bitcoin follower's decisions (indexer/btc/chain_window.h): where a first start
// begins, whether our tip is on the node's best chain, and the window across reorgs.
#include "indexer/btc/chain_window.h"
#include "tests/unit/chain_testing.h"

#include <doctest/doctest.h>

using namespace bitacora;
using bitacora::testing::H;
using namespace bitacora::btc;

TEST_CASE("a first start follows from -btcstartheight, or from the node's tip, and waits for a chain too short")
{
    CHECK(StartBase(-1, 150) == 150u); // only new blocks
    CHECK(StartBase(101, 150) == 100u);
    CHECK(StartBase(0, 150) == 0u); // at least after block 0
    CHECK(StartBase(1, 0) == 0u);
    CHECK(StartBase(151, 150) == 150u);
    CHECK_FALSE(StartBase(152, 150));
}

TEST_CASE("our tip is walked back while the node's best chain does not hold it")
{
    ChainWindow window(3);
    window.Reset({100, H(100, 'a')});
    for (uint64_t h = 101; h <= 104; ++h) window.Connect({h, H(h, 'a')});
    CHECK(window.tip() == ChainTip{104, H(104, 'a')});
    // Above the node's best: not on it, without asking.
    CHECK(window.BeforeAsking(103) == ChainWindow::Walk::Disconnect);
    CHECK(window.BeforeAsking(104) == ChainWindow::Walk::Ask);
    CHECK(window.AfterAsking(H(104, 'a')) == ChainWindow::Walk::OnBest);
    CHECK(window.AfterAsking(H(104, 'b')) == ChainWindow::Walk::Disconnect);
    CHECK(window.AfterAsking(std::nullopt) == ChainWindow::Walk::Disconnect);

    // The window keeps 3 blocks: the parents of the last two are known, the oldest's is asked.
    REQUIRE(window.Parent());
    window.Disconnect(*window.Parent());
    CHECK(window.tip().height == 103);
    window.Disconnect(*window.Parent());
    CHECK(window.tip().height == 102);
    CHECK_FALSE(window.Parent());
    window.Disconnect({101, H(101, 'a')}); // what the node said the parent is
    CHECK(window.tip() == ChainTip{101, H(101, 'a')});
    CHECK(window.Extends(H(101, 'a')));
    CHECK_FALSE(window.Extends(H(101, 'b')));
    window.Connect({102, H(102, 'b')});
    CHECK(window.tip() == ChainTip{102, H(102, 'b')});
    CHECK(window.Parent() == ChainTip{101, H(101, 'a')});
}
