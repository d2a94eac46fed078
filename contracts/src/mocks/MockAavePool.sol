// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {Ownable} from "@openzeppelin/contracts/access/Ownable.sol";
import {Math} from "@openzeppelin/contracts/utils/math/Math.sol";
import {IAavePool} from "../interfaces/IAavePool.sol";

interface IMintable {
    function mint(address to, uint256 amount) external;
}

/// @notice Aave-v3-style interest-bearing token: balances are scaled balances times the
/// pool's liquidity index, so they grow with time. Not transferable (the vault never
/// moves aTokens).
contract MockAToken {
    MockAavePool public immutable pool;
    mapping(address => uint256) public scaledBalanceOf;
    uint256 public scaledTotalSupply;

    event Transfer(address indexed from, address indexed to, uint256 value);

    error OnlyPool();
    error NotTransferable();

    constructor() {
        pool = MockAavePool(msg.sender);
    }

    function name() external pure returns (string memory) {
        return "Mock Aave USDC";
    }

    function symbol() external pure returns (string memory) {
        return "aUSDC";
    }

    function decimals() external pure returns (uint8) {
        return 6;
    }

    function balanceOf(address account) external view returns (uint256) {
        return Math.mulDiv(scaledBalanceOf[account], pool.liquidityIndex(), 1e27);
    }

    function totalSupply() external view returns (uint256) {
        return Math.mulDiv(scaledTotalSupply, pool.liquidityIndex(), 1e27);
    }

    function transfer(address, uint256) external pure returns (bool) {
        revert NotTransferable();
    }

    function mintScaled(address to, uint256 scaled, uint256 amount) external {
        if (msg.sender != address(pool)) revert OnlyPool();
        scaledBalanceOf[to] += scaled;
        scaledTotalSupply += scaled;
        emit Transfer(address(0), to, amount);
    }

    function burnScaled(address from, uint256 scaled, uint256 amount) external {
        if (msg.sender != address(pool)) revert OnlyPool();
        scaledBalanceOf[from] -= scaled;
        scaledTotalSupply -= scaled;
        emit Transfer(from, address(0), amount);
    }
}

/// @notice A one-asset Aave v3 pool double. Supplied assets earn simple interest at
/// `ratePerYearRay` (1e27 = 100 %/year) through a growing liquidity index; interest is
/// minted from the (mock) asset when withdrawn, so the pool can always pay out.
contract MockAavePool is IAavePool, Ownable {
    using SafeERC20 for IERC20;

    uint256 internal constant RAY = 1e27;

    IERC20 public immutable asset;
    MockAToken public immutable aToken;
    uint256 public ratePerYearRay;
    uint256 private _indexAtUpdate = RAY;
    uint256 private _updatedAt;

    event RateChanged(uint256 ratePerYearRay);

    error WrongAsset(address asset);
    error ZeroAmount();
    error InsufficientBalance(uint256 requested, uint256 available);

    constructor(IERC20 asset_, uint256 ratePerYearRay_) Ownable(msg.sender) {
        asset = asset_;
        aToken = new MockAToken();
        ratePerYearRay = ratePerYearRay_;
        _updatedAt = block.timestamp;
    }

    function liquidityIndex() public view returns (uint256) {
        uint256 elapsed = block.timestamp - _updatedAt;
        return _indexAtUpdate + Math.mulDiv(_indexAtUpdate, ratePerYearRay * elapsed, RAY * 365 days);
    }

    function setRate(uint256 ratePerYearRay_) external onlyOwner {
        _accrue();
        ratePerYearRay = ratePerYearRay_;
        emit RateChanged(ratePerYearRay_);
    }

    function supply(address asset_, uint256 amount, address onBehalfOf, uint16) external {
        if (asset_ != address(asset)) revert WrongAsset(asset_);
        if (amount == 0) revert ZeroAmount();
        _accrue();
        uint256 scaled = Math.mulDiv(amount, RAY, _indexAtUpdate);
        asset.safeTransferFrom(msg.sender, address(this), amount);
        aToken.mintScaled(onBehalfOf, scaled, amount);
    }

    function withdraw(address asset_, uint256 amount, address to) external returns (uint256) {
        if (asset_ != address(asset)) revert WrongAsset(asset_);
        _accrue();
        uint256 index = _indexAtUpdate;
        uint256 scaledBalance = aToken.scaledBalanceOf(msg.sender);
        uint256 available = Math.mulDiv(scaledBalance, index, RAY);
        if (amount == type(uint256).max) amount = available;
        if (amount == 0) revert ZeroAmount();
        if (amount > available) revert InsufficientBalance(amount, available);
        uint256 scaled = Math.mulDiv(amount, RAY, index, Math.Rounding.Ceil);
        if (scaled > scaledBalance) scaled = scaledBalance;
        aToken.burnScaled(msg.sender, scaled, amount);
        uint256 held = asset.balanceOf(address(this));
        if (held < amount) IMintable(address(asset)).mint(address(this), amount - held);
        asset.safeTransfer(to, amount);
        return amount;
    }

    function _accrue() private {
        _indexAtUpdate = liquidityIndex();
        _updatedAt = block.timestamp;
    }
}
