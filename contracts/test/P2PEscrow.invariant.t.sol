// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {Test} from "./utils/Test.sol";
import {P2PEscrow} from "../src/P2PEscrow.sol";
import {MockUSDC} from "../src/mocks/MockUSDC.sol";
import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";

/// Drives the escrow through random sequences of valid and invalid calls by a few actors.
contract EscrowHandler is Test {
    P2PEscrow public immutable escrow;
    MockUSDC public immutable usdc;
    address public immutable arbiter;
    address[4] internal actors = [address(0x1001), address(0x1002), address(0x1003), address(0x1004)];

    constructor(P2PEscrow escrow_, MockUSDC usdc_, address arbiter_) {
        escrow = escrow_;
        usdc = usdc_;
        arbiter = arbiter_;
        for (uint256 i = 0; i < actors.length; i++) {
            usdc.mint(actors[i], 1e15);
            vm.prank(actors[i]);
            usdc.approve(address(escrow), type(uint256).max);
        }
    }

    function _actor(uint256 seed) internal view returns (address) {
        return actors[seed % actors.length];
    }

    function _order(uint256 seed) internal view returns (uint256) {
        uint256 next = escrow.nextOrderId();
        return next == 1 ? 1 : 1 + (seed % (next - 1));
    }

    function create(uint256 sellerSeed, uint256 buyerSeed, uint256 amount, uint256 expiryOffset) external {
        address seller = _actor(sellerSeed);
        address buyer = _actor(buyerSeed);
        if (seller == buyer) buyer = _actor(buyerSeed + 1);
        amount = bound(amount, 1, 1e12);
        expiryOffset = bound(expiryOffset, 1, 30 days);
        vm.prank(seller);
        escrow.createOrder(buyer, amount, uint64(block.timestamp + expiryOffset));
    }

    function confirm(uint256 orderSeed, uint256 callerSeed, bytes32 proof) external {
        uint256 id = _order(orderSeed);
        address caller = callerSeed % 3 == 0 ? _actor(callerSeed) : escrow.getOrder(id).buyer;
        vm.prank(caller);
        escrow.confirmPayment(id, proof);
    }

    function release(uint256 orderSeed) external {
        uint256 id = _order(orderSeed);
        vm.prank(escrow.getOrder(id).seller);
        escrow.release(id);
    }

    function cancel(uint256 orderSeed) external {
        uint256 id = _order(orderSeed);
        vm.prank(escrow.getOrder(id).seller);
        escrow.cancel(id);
    }

    function expire(uint256 orderSeed, uint256 wait) external {
        vm.warp(block.timestamp + bound(wait, 0, 31 days));
        escrow.refundExpired(_order(orderSeed));
    }

    function dispute(uint256 orderSeed, bool byBuyer) external {
        uint256 id = _order(orderSeed);
        P2PEscrow.Order memory order = escrow.getOrder(id);
        vm.prank(byBuyer ? order.buyer : order.seller);
        escrow.dispute(id);
    }

    function resolve(uint256 orderSeed, bool favorBuyer) external {
        vm.prank(arbiter);
        escrow.resolveDispute(_order(orderSeed), favorBuyer);
    }
}

contract P2PEscrowInvariantTest is Test {
    MockUSDC internal usdc;
    P2PEscrow internal escrow;
    EscrowHandler internal handler;

    function setUp() public {
        usdc = new MockUSDC();
        escrow = new P2PEscrow(IERC20(address(usdc)), address(this), address(0xA4B));
        handler = new EscrowHandler(escrow, usdc, address(0xA4B));
        targetContract(address(handler));
    }

    /// The escrow holds exactly the USDC of its open orders: nothing stuck, nothing missing.
    function invariant_balanceEqualsOpenOrders() public view {
        uint256 open;
        uint256 next = escrow.nextOrderId();
        for (uint256 id = 1; id < next; id++) {
            P2PEscrow.Order memory order = escrow.getOrder(id);
            if (
                order.state == P2PEscrow.State.AWAITING_PAYMENT || order.state == P2PEscrow.State.AWAITING_DELIVERY
                    || order.state == P2PEscrow.State.DISPUTED
            ) open += order.amount;
        }
        assertEq(usdc.balanceOf(address(escrow)), open, "escrow balance vs open orders");
    }

    function invariant_reputationWithinBounds() public view {
        for (uint160 i = 0x1001; i <= 0x1004; i++) {
            assertLe(escrow.reputation(address(i)), 100, "reputation");
        }
    }
}
