// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// @notice The subset of Aave v3's IPool that YieldVault uses.
interface IAavePool {
    function supply(address asset, uint256 amount, address onBehalfOf, uint16 referralCode) external;

    /// @return The amount actually withdrawn (all of it when amount is type(uint256).max).
    function withdraw(address asset, uint256 amount, address to) external returns (uint256);
}
