// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {Test} from "./utils/Test.sol";
import {YieldVault} from "../src/YieldVault.sol";
import {MockUSDC} from "../src/mocks/MockUSDC.sol";
import {MockAavePool} from "../src/mocks/MockAavePool.sol";
import {IAavePool} from "../src/interfaces/IAavePool.sol";
import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {IERC20Metadata} from "@openzeppelin/contracts/token/ERC20/extensions/IERC20Metadata.sol";

contract VaultHandler is Test {
    YieldVault public immutable vault;
    MockUSDC public immutable usdc;
    address[3] public actors = [address(0x2001), address(0x2002), address(0x2003)];

    constructor(YieldVault vault_, MockUSDC usdc_) {
        vault = vault_;
        usdc = usdc_;
        for (uint256 i = 0; i < actors.length; i++) {
            vm.prank(actors[i]);
            usdc.approve(address(vault), type(uint256).max);
        }
    }

    function deposit(uint256 actorSeed, uint256 assets) external {
        address actor = actors[actorSeed % actors.length];
        assets = bound(assets, 1, 1e13);
        usdc.mint(actor, assets);
        vm.prank(actor);
        vault.deposit(assets, actor);
    }

    function withdraw(uint256 actorSeed, uint256 assets) external {
        address actor = actors[actorSeed % actors.length];
        uint256 max = vault.maxWithdraw(actor);
        if (max == 0) return;
        vm.prank(actor);
        vault.withdraw(bound(assets, 1, max), actor, actor);
    }

    function redeem(uint256 actorSeed, uint256 shares) external {
        address actor = actors[actorSeed % actors.length];
        uint256 max = vault.maxRedeem(actor);
        if (max == 0) return;
        vm.prank(actor);
        vault.redeem(bound(shares, 1, max), actor, actor);
    }

    function wait(uint256 seconds_) external {
        vm.warp(block.timestamp + bound(seconds_, 1, 60 days));
    }
}

contract YieldVaultInvariantTest is Test {
    MockUSDC internal usdc;
    MockAavePool internal pool;
    YieldVault internal vault;
    VaultHandler internal handler;

    function setUp() public {
        usdc = new MockUSDC();
        pool = new MockAavePool(IERC20(address(usdc)), 8e25);
        vault = new YieldVault(IERC20Metadata(address(usdc)), IAavePool(address(pool)), IERC20(address(pool.aToken())));
        handler = new VaultHandler(vault, usdc);
        targetContract(address(handler));
    }

    /// No depositor can redeem more than their share of total assets.
    function invariant_noDepositorRedeemsMoreThanTheirShare() public view {
        uint256 totalAssets = vault.totalAssets();
        uint256 totalSupply = vault.totalSupply();
        uint256 claims;
        for (uint256 i = 0; i < 3; i++) {
            address actor = handler.actors(i);
            uint256 shares = vault.balanceOf(actor);
            uint256 redeemable = vault.maxWithdraw(actor);
            claims += redeemable;
            if (totalSupply > 0) {
                assertLe(redeemable, shares * totalAssets / totalSupply + 1, "claim above pro-rata share");
            }
        }
        assertLe(claims, totalAssets, "claims exceed the vault's assets");
    }

    /// The vault counts exactly its aTokens (principal plus interest) and idle USDC.
    function invariant_assetsAreAaveBalancePlusIdle() public view {
        assertEq(vault.totalAssets(), pool.aToken().balanceOf(address(vault)) + usdc.balanceOf(address(vault)), "sum");
    }
}
