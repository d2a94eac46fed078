// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {IERC20Metadata} from "@openzeppelin/contracts/token/ERC20/extensions/IERC20Metadata.sol";
import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";
import {ERC4626} from "@openzeppelin/contracts/token/ERC20/extensions/ERC4626.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {IAavePool} from "./interfaces/IAavePool.sol";

/// @title YieldVault
/// @notice ERC-4626 vault that supplies all deposited USDC to an Aave v3 pool. Its
/// assets are its aToken balance, which grows with interest, so every share's value
/// grows alike: yield is shared by shares held over time, not by principal deposited
/// (the flaw of the original YieldAggregator sketch). Withdrawals take exactly the
/// assets asked for from the pool, so the arithmetic cannot underflow once yield exists.
contract YieldVault is ERC4626 {
    using SafeERC20 for IERC20;

    IAavePool public immutable pool;
    IERC20 public immutable aToken;

    error ZeroAddress();

    constructor(IERC20Metadata usdc, IAavePool pool_, IERC20 aToken_)
        ERC20("Bitacora USDC Yield Vault", "bvUSDC")
        ERC4626(usdc)
    {
        if (address(usdc) == address(0) || address(pool_) == address(0) || address(aToken_) == address(0)) {
            revert ZeroAddress();
        }
        pool = pool_;
        aToken = aToken_;
    }

    /// @notice Supplied assets with their interest, plus anything not yet supplied.
    function totalAssets() public view override returns (uint256) {
        return aToken.balanceOf(address(this)) + IERC20(asset()).balanceOf(address(this));
    }

    /// @dev Virtual shares (10^6 per unit of asset) make the first-depositor inflation
    /// attack unprofitable (OpenZeppelin's recommended mitigation).
    function _decimalsOffset() internal pure override returns (uint8) {
        return 6;
    }

    function _deposit(address caller, address receiver, uint256 assets, uint256 shares) internal override {
        super._deposit(caller, receiver, assets, shares);
        IERC20(asset()).forceApprove(address(pool), assets);
        pool.supply(asset(), assets, address(this), 0);
    }

    function _withdraw(address caller, address receiver, address owner, uint256 assets, uint256 shares)
        internal
        override
    {
        uint256 idle = IERC20(asset()).balanceOf(address(this));
        if (assets > idle) pool.withdraw(asset(), assets - idle, address(this));
        super._withdraw(caller, receiver, owner, assets, shares);
    }
}
