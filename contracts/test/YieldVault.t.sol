// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {Test} from "./utils/Test.sol";
import {YieldVault} from "../src/YieldVault.sol";
import {MockUSDC} from "../src/mocks/MockUSDC.sol";
import {MockAavePool, MockAToken} from "../src/mocks/MockAavePool.sol";
import {IAavePool} from "../src/interfaces/IAavePool.sol";
import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {IERC20Metadata} from "@openzeppelin/contracts/token/ERC20/extensions/IERC20Metadata.sol";
import {ERC4626} from "@openzeppelin/contracts/token/ERC20/extensions/ERC4626.sol";
import {IERC4626} from "@openzeppelin/contracts/interfaces/IERC4626.sol";
import {Ownable} from "@openzeppelin/contracts/access/Ownable.sol";

contract YieldVaultTest is Test {
    uint256 internal constant RAY = 1e27;
    uint256 internal constant FIVE_PERCENT = 5e25; // 5 %/year in ray

    MockUSDC internal usdc;
    MockAavePool internal pool;
    YieldVault internal vault;
    address internal alice = address(0xA11CE);
    address internal bob = address(0xB0B);

    function setUp() public {
        usdc = new MockUSDC();
        pool = new MockAavePool(IERC20(address(usdc)), FIVE_PERCENT);
        vault = new YieldVault(IERC20Metadata(address(usdc)), IAavePool(address(pool)), IERC20(address(pool.aToken())));
        address[2] memory users = [alice, bob];
        for (uint256 i = 0; i < users.length; i++) {
            usdc.mint(users[i], 10_000_000e6);
            vm.prank(users[i]);
            usdc.approve(address(vault), type(uint256).max);
        }
    }

    function _deposit(address who, uint256 assets) internal returns (uint256 shares) {
        vm.prank(who);
        shares = vault.deposit(assets, who);
    }

    function _redeemAll(address who) internal returns (uint256 assets) {
        uint256 shares = vault.balanceOf(who);
        vm.prank(who);
        assets = vault.redeem(shares, who, who);
    }

    function test_deposit_suppliesEverythingToThePool() public {
        vm.expectEmit(true, true, true, true, address(vault));
        emit IERC4626.Deposit(alice, alice, 1000e6, 1000e6 * 1e6);
        uint256 shares = _deposit(alice, 1000e6);
        assertEq(shares, 1000e6 * 1e6, "shares carry 6 extra decimals");
        assertEq(usdc.balanceOf(address(vault)), 0, "nothing idle");
        assertEq(pool.aToken().balanceOf(address(vault)), 1000e6, "aToken balance");
        assertEq(vault.totalAssets(), 1000e6, "total assets");
    }

    function test_interestAccruesToShares() public {
        _deposit(alice, 1000e6);
        vm.warp(block.timestamp + 365 days);
        assertEq(vault.totalAssets(), 1050e6, "5 % after a year");
        assertEq(vault.previewRedeem(vault.balanceOf(alice)), 1050e6 - 1, "alice's claim (rounded down)");
    }

    /// The sketch split yield by principal; shares split it by time held.
    function test_lateDepositorGetsNoEarlierYield() public {
        _deposit(alice, 1000e6);
        vm.warp(block.timestamp + 365 days); // alice earns 50
        _deposit(bob, 1000e6);
        vm.warp(block.timestamp + 365 days); // both earn 5 % on what they hold
        uint256 aliceAssets = _redeemAll(alice);
        uint256 bobAssets = _redeemAll(bob);
        assertApproxEq(aliceAssets, 1050e6 + 52.5e6, 2, "alice: 1000 + 50 + 5 % of 1050");
        assertApproxEq(bobAssets, 1050e6, 2, "bob: 1000 + 5 % of 1000");
        assertLe(vault.totalAssets(), 2, "vault emptied but for rounding dust");
    }

    function test_withdrawAfterYieldDoesNotUnderflow() public {
        _deposit(alice, 500e6);
        _deposit(bob, 1500e6);
        vm.warp(block.timestamp + 3 * 365 days);
        vm.prank(alice);
        uint256 shares = vault.withdraw(100e6, alice, alice);
        assertGe(shares, 1, "shares burnt");
        _redeemAll(alice);
        _redeemAll(bob);
        assertEq(vault.totalSupply(), 0, "all shares redeemed");
    }

    function test_revert_withdrawMoreThanOwned() public {
        _deposit(alice, 100e6);
        uint256 max = vault.maxWithdraw(alice);
        vm.expectRevert(abi.encodeWithSelector(ERC4626.ERC4626ExceededMaxWithdraw.selector, alice, max + 1, max));
        vm.prank(alice);
        vault.withdraw(max + 1, alice, alice);
        vm.expectRevert(abi.encodeWithSelector(ERC4626.ERC4626ExceededMaxRedeem.selector, bob, 1, 0));
        vm.prank(bob);
        vault.redeem(1, bob, bob);
    }

    function test_revert_redeemOthersSharesWithoutAllowance() public {
        _deposit(alice, 100e6);
        vm.expectRevert();
        vm.prank(bob);
        vault.redeem(1e6, bob, alice);
    }

    function test_revert_constructorZeroAddress() public {
        IERC20 aToken = IERC20(address(pool.aToken()));
        vm.expectRevert(YieldVault.ZeroAddress.selector);
        new YieldVault(IERC20Metadata(address(usdc)), IAavePool(address(0)), aToken);
    }

    function test_revert_poolGuards() public {
        vm.expectRevert(abi.encodeWithSelector(MockAavePool.WrongAsset.selector, address(0xdead)));
        pool.supply(address(0xdead), 1, address(this), 0);
        vm.expectRevert(MockAavePool.ZeroAmount.selector);
        pool.supply(address(usdc), 0, address(this), 0);
        vm.expectRevert(abi.encodeWithSelector(MockAavePool.InsufficientBalance.selector, 1, 0));
        pool.withdraw(address(usdc), 1, address(this));
        vm.expectRevert(abi.encodeWithSelector(Ownable.OwnableUnauthorizedAccount.selector, alice));
        vm.prank(alice);
        pool.setRate(0);
        MockAToken aToken = pool.aToken();
        vm.expectRevert(MockAToken.NotTransferable.selector);
        aToken.transfer(alice, 1);
        vm.expectRevert(MockAToken.OnlyPool.selector);
        aToken.mintScaled(alice, 1, 1);
    }

    function test_rateChangeAppliesFromThenOn() public {
        _deposit(alice, 1000e6);
        vm.warp(block.timestamp + 365 days);
        pool.setRate(0);
        vm.warp(block.timestamp + 365 days);
        assertEq(vault.totalAssets(), 1050e6, "no interest at rate 0");
    }

    function testFuzz_depositWaitRedeem(uint256 assets, uint256 wait) public {
        assets = bound(assets, 1, 10_000_000e6);
        wait = bound(wait, 0, 10 * 365 days);
        _deposit(alice, assets);
        vm.warp(block.timestamp + wait);
        uint256 expected = assets * pool.liquidityIndex() / RAY;
        uint256 out = _redeemAll(alice);
        assertLe(out, expected, "never more than principal plus interest");
        assertGe(out + 2, expected, "never less than principal plus interest, but for rounding");
    }
}
