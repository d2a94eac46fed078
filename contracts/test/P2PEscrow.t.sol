// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {Test} from "./utils/Test.sol";
import {P2PEscrow} from "../src/P2PEscrow.sol";
import {MockUSDC} from "../src/mocks/MockUSDC.sol";
import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {IERC20Errors} from "@openzeppelin/contracts/interfaces/draft-IERC6093.sol";
import {IAccessControl} from "@openzeppelin/contracts/access/IAccessControl.sol";
import {Pausable} from "@openzeppelin/contracts/utils/Pausable.sol";

contract P2PEscrowTest is Test {
    MockUSDC internal usdc;
    P2PEscrow internal escrow;
    address internal admin = address(0xA11CE);
    address internal arbiter = address(0xA4B);
    address internal seller = address(0x5E11E4);
    address internal buyer = address(0xB0B);
    address internal stranger = address(0x5743);
    uint256 internal constant AMOUNT = 250e6; // 250 USDC
    bytes32 internal constant PROOF = keccak256("bank transfer 2026-11-28 #8812");

    function setUp() public {
        usdc = new MockUSDC();
        escrow = new P2PEscrow(IERC20(address(usdc)), admin, arbiter);
        usdc.mint(seller, 1_000_000e6);
        vm.prank(seller);
        usdc.approve(address(escrow), type(uint256).max);
    }

    // ----- helpers -----

    function _create() internal returns (uint256 id) {
        vm.prank(seller);
        id = escrow.createOrder(buyer, AMOUNT, uint64(block.timestamp + 1 hours));
    }

    function _confirmed() internal returns (uint256 id) {
        id = _create();
        vm.prank(buyer);
        escrow.confirmPayment(id, PROOF);
    }

    function _disputed(address by) internal returns (uint256 id) {
        id = _confirmed();
        vm.prank(by);
        escrow.dispute(id);
    }

    function _state(uint256 id) internal view returns (P2PEscrow.State) {
        return escrow.getOrder(id).state;
    }

    function _assertState(uint256 id, P2PEscrow.State expected) internal view {
        assertEq(uint256(_state(id)), uint256(expected), "order state");
    }

    function _invalidState(uint256 id, P2PEscrow.State current, P2PEscrow.State expected)
        internal
        pure
        returns (bytes memory)
    {
        return abi.encodeWithSelector(P2PEscrow.InvalidState.selector, id, current, expected);
    }

    // ----- transitions -----

    function test_createOrder_locksSellerFundsAndNamesBuyer() public {
        uint64 expiry = uint64(block.timestamp + 1 hours);
        vm.expectEmit(true, true, true, true, address(escrow));
        emit P2PEscrow.OrderCreated(1, seller, buyer, AMOUNT, expiry);
        vm.prank(seller);
        uint256 id = escrow.createOrder(buyer, AMOUNT, expiry);

        assertEq(id, 1, "first order id");
        assertEq(escrow.nextOrderId(), 2, "next order id");
        P2PEscrow.Order memory order = escrow.getOrder(id);
        assertEq(order.seller, seller, "seller");
        assertEq(order.buyer, buyer, "buyer");
        assertEq(order.amount, AMOUNT, "amount");
        assertEq(uint256(order.expiry), uint256(expiry), "expiry");
        _assertState(id, P2PEscrow.State.AWAITING_PAYMENT);
        assertEq(usdc.balanceOf(address(escrow)), AMOUNT, "escrow balance");
        assertEq(escrow.reputation(seller), 50, "initial reputation");
    }

    function test_confirmPayment_recordsProof() public {
        uint256 id = _create();
        vm.expectEmit(true, true, true, true, address(escrow));
        emit P2PEscrow.PaymentConfirmed(id, buyer, PROOF);
        vm.prank(buyer);
        escrow.confirmPayment(id, PROOF);
        _assertState(id, P2PEscrow.State.AWAITING_DELIVERY);
        assertEq(escrow.getOrder(id).paymentProof, PROOF, "proof");
    }

    function test_release_paysBuyerAndRewardsSeller() public {
        uint256 id = _confirmed();
        vm.expectEmit(true, true, true, true, address(escrow));
        emit P2PEscrow.OrderReleased(id, seller, buyer, AMOUNT);
        vm.expectEmit(true, true, true, true, address(escrow));
        emit P2PEscrow.ReputationChanged(seller, 50, 51);
        vm.prank(seller);
        escrow.release(id);
        _assertState(id, P2PEscrow.State.COMPLETE);
        assertEq(usdc.balanceOf(buyer), AMOUNT, "buyer paid");
        assertEq(usdc.balanceOf(address(escrow)), 0, "escrow empty");
        assertEq(escrow.reputation(seller), 51, "reputation");
    }

    function test_cancel_refundsSeller() public {
        uint256 before = usdc.balanceOf(seller);
        uint256 id = _create();
        vm.expectEmit(true, true, true, true, address(escrow));
        emit P2PEscrow.OrderCancelled(id, seller, AMOUNT);
        vm.prank(seller);
        escrow.cancel(id);
        _assertState(id, P2PEscrow.State.REFUNDED);
        assertEq(usdc.balanceOf(seller), before, "seller refunded");
    }

    function test_refundExpired_byAnyoneAfterExpiry() public {
        uint256 before = usdc.balanceOf(seller);
        uint256 id = _create();
        vm.warp(block.timestamp + 1 hours);
        vm.expectEmit(true, true, true, true, address(escrow));
        emit P2PEscrow.OrderExpired(id, seller, stranger, AMOUNT);
        vm.prank(stranger);
        escrow.refundExpired(id);
        _assertState(id, P2PEscrow.State.REFUNDED);
        assertEq(usdc.balanceOf(seller), before, "seller refunded");
        assertEq(usdc.balanceOf(stranger), 0, "caller gets nothing");
    }

    function test_dispute_byBuyerOrSeller() public {
        uint256 byBuyer = _confirmed();
        vm.expectEmit(true, true, true, true, address(escrow));
        emit P2PEscrow.OrderDisputed(byBuyer, buyer, true);
        vm.prank(buyer);
        escrow.dispute(byBuyer);
        _assertState(byBuyer, P2PEscrow.State.DISPUTED);
        assertEq(escrow.getOrder(byBuyer).disputedBy, buyer, "disputed by buyer");

        uint256 bySeller = _confirmed();
        vm.expectEmit(true, true, true, true, address(escrow));
        emit P2PEscrow.OrderDisputed(bySeller, seller, false);
        vm.prank(seller);
        escrow.dispute(bySeller);
        assertEq(escrow.getOrder(bySeller).disputedBy, seller, "disputed by seller");
    }

    function test_resolveDispute_favorBuyer_paysBuyerAndPenalisesSeller() public {
        uint256 id = _disputed(buyer);
        vm.expectEmit(true, true, true, true, address(escrow));
        emit P2PEscrow.DisputeResolved(id, arbiter, true, buyer, AMOUNT);
        vm.expectEmit(true, true, true, true, address(escrow));
        emit P2PEscrow.ReputationChanged(seller, 50, 45);
        vm.prank(arbiter);
        escrow.resolveDispute(id, true);
        _assertState(id, P2PEscrow.State.COMPLETE);
        assertEq(usdc.balanceOf(buyer), AMOUNT, "buyer paid");
        assertEq(escrow.reputation(seller), 45, "reputation");
    }

    function test_resolveDispute_favorSeller_refundsSeller() public {
        uint256 before = usdc.balanceOf(seller);
        uint256 id = _disputed(seller);
        vm.expectEmit(true, true, true, true, address(escrow));
        emit P2PEscrow.DisputeResolved(id, arbiter, false, seller, AMOUNT);
        vm.prank(arbiter);
        escrow.resolveDispute(id, false);
        _assertState(id, P2PEscrow.State.REFUNDED);
        assertEq(usdc.balanceOf(seller), before, "seller refunded");
        assertEq(usdc.balanceOf(buyer), 0, "buyer unpaid");
        assertEq(escrow.reputation(seller), 50, "reputation unchanged");
    }

    function test_reputation_saturatesAtZeroWithoutBlockingResolution() public {
        for (uint256 i = 0; i < 12; i++) {
            uint256 id = _disputed(buyer);
            vm.prank(arbiter);
            escrow.resolveDispute(id, true); // 50 -> 45 -> ... -> 0, then stays 0
            _assertState(id, P2PEscrow.State.COMPLETE);
        }
        assertEq(escrow.reputation(seller), 0, "reputation floor");
    }

    function test_reputation_saturatesAtHundred() public {
        for (uint256 i = 0; i < 55; i++) {
            uint256 id = _confirmed();
            vm.prank(seller);
            escrow.release(id);
        }
        assertEq(escrow.reputation(seller), 100, "reputation ceiling");
    }

    function test_pause_blocksNewBusinessButNotRefundsOrResolution() public {
        uint256 open = _create();
        uint256 disputed = _disputed(buyer);
        vm.prank(admin);
        escrow.pause();

        vm.expectRevert(Pausable.EnforcedPause.selector);
        vm.prank(seller);
        escrow.createOrder(buyer, AMOUNT, uint64(block.timestamp + 1 hours));
        vm.expectRevert(Pausable.EnforcedPause.selector);
        vm.prank(buyer);
        escrow.confirmPayment(open, PROOF);
        uint256 confirmedBeforePause = escrow.nextOrderId() - 1;
        vm.expectRevert(Pausable.EnforcedPause.selector);
        vm.prank(buyer);
        escrow.dispute(confirmedBeforePause);

        vm.prank(arbiter);
        escrow.resolveDispute(disputed, false);
        vm.prank(seller);
        escrow.cancel(open);
        _assertState(open, P2PEscrow.State.REFUNDED);

        vm.prank(admin);
        escrow.unpause();
        _create();
    }

    // ----- reverts -----

    function test_revert_constructorZeroAddress() public {
        vm.expectRevert(P2PEscrow.ZeroAddress.selector);
        new P2PEscrow(IERC20(address(0)), admin, arbiter);
        vm.expectRevert(P2PEscrow.ZeroAddress.selector);
        new P2PEscrow(IERC20(address(usdc)), admin, address(0));
    }

    function test_revert_createOrderBadInput() public {
        uint64 expiry = uint64(block.timestamp + 1 hours);
        vm.startPrank(seller);
        vm.expectRevert(P2PEscrow.ZeroAmount.selector);
        escrow.createOrder(buyer, 0, expiry);
        vm.expectRevert(abi.encodeWithSelector(P2PEscrow.InvalidBuyer.selector, address(0)));
        escrow.createOrder(address(0), AMOUNT, expiry);
        vm.expectRevert(abi.encodeWithSelector(P2PEscrow.InvalidBuyer.selector, seller));
        escrow.createOrder(seller, AMOUNT, expiry);
        vm.expectRevert(abi.encodeWithSelector(P2PEscrow.InvalidExpiry.selector, uint64(block.timestamp)));
        escrow.createOrder(buyer, AMOUNT, uint64(block.timestamp));
        uint64 tooFar = uint64(block.timestamp + 30 days + 1);
        vm.expectRevert(abi.encodeWithSelector(P2PEscrow.InvalidExpiry.selector, tooFar));
        escrow.createOrder(buyer, AMOUNT, tooFar);
        vm.stopPrank();
    }

    function test_revert_createOrderWithoutAllowanceCannotLockOthersFunds() public {
        // The sketch's flaw: a buyer naming an approved seller. Here the caller is the seller.
        vm.prank(buyer);
        vm.expectRevert(
            abi.encodeWithSelector(IERC20Errors.ERC20InsufficientAllowance.selector, address(escrow), 0, AMOUNT)
        );
        escrow.createOrder(seller, AMOUNT, uint64(block.timestamp + 1 hours));
        assertEq(usdc.balanceOf(address(escrow)), 0, "nothing locked");
    }

    function test_revert_unknownOrder() public {
        vm.expectRevert(abi.encodeWithSelector(P2PEscrow.OrderNotFound.selector, 42));
        vm.prank(buyer);
        escrow.confirmPayment(42, PROOF);
        vm.expectRevert(abi.encodeWithSelector(P2PEscrow.OrderNotFound.selector, 42));
        escrow.refundExpired(42);
    }

    function test_revert_confirmPayment() public {
        uint256 id = _create();
        vm.expectRevert(abi.encodeWithSelector(P2PEscrow.NotBuyer.selector, id, stranger));
        vm.prank(stranger);
        escrow.confirmPayment(id, PROOF);

        vm.warp(block.timestamp + 1 hours);
        vm.expectRevert(abi.encodeWithSelector(P2PEscrow.OrderExpiredAt.selector, id, uint64(block.timestamp)));
        vm.prank(buyer);
        escrow.confirmPayment(id, PROOF);

        uint256 confirmed = _confirmed();
        vm.expectRevert(
            _invalidState(confirmed, P2PEscrow.State.AWAITING_DELIVERY, P2PEscrow.State.AWAITING_PAYMENT)
        );
        vm.prank(buyer);
        escrow.confirmPayment(confirmed, PROOF);
    }

    function test_revert_release() public {
        uint256 id = _create();
        vm.expectRevert(_invalidState(id, P2PEscrow.State.AWAITING_PAYMENT, P2PEscrow.State.AWAITING_DELIVERY));
        vm.prank(seller);
        escrow.release(id);

        uint256 confirmed = _confirmed();
        vm.expectRevert(abi.encodeWithSelector(P2PEscrow.NotSeller.selector, confirmed, buyer));
        vm.prank(buyer);
        escrow.release(confirmed);

        vm.prank(seller);
        escrow.release(confirmed);
        vm.expectRevert(_invalidState(confirmed, P2PEscrow.State.COMPLETE, P2PEscrow.State.AWAITING_DELIVERY));
        vm.prank(seller);
        escrow.release(confirmed);

        uint256 open = _confirmed();
        vm.prank(admin);
        escrow.pause();
        vm.expectRevert(Pausable.EnforcedPause.selector);
        vm.prank(seller);
        escrow.release(open);
    }

    function test_revert_cancel() public {
        uint256 id = _create();
        vm.expectRevert(abi.encodeWithSelector(P2PEscrow.NotSeller.selector, id, buyer));
        vm.prank(buyer);
        escrow.cancel(id);

        uint256 confirmed = _confirmed();
        vm.expectRevert(
            _invalidState(confirmed, P2PEscrow.State.AWAITING_DELIVERY, P2PEscrow.State.AWAITING_PAYMENT)
        );
        vm.prank(seller);
        escrow.cancel(confirmed);
    }

    function test_revert_refundExpired() public {
        uint256 id = _create();
        uint64 expiry = escrow.getOrder(id).expiry;
        vm.expectRevert(abi.encodeWithSelector(P2PEscrow.NotExpired.selector, id, expiry));
        escrow.refundExpired(id);

        uint256 confirmed = _confirmed();
        vm.warp(block.timestamp + 2 hours);
        vm.expectRevert(
            _invalidState(confirmed, P2PEscrow.State.AWAITING_DELIVERY, P2PEscrow.State.AWAITING_PAYMENT)
        );
        escrow.refundExpired(confirmed);
    }

    function test_revert_dispute() public {
        uint256 id = _create();
        vm.expectRevert(_invalidState(id, P2PEscrow.State.AWAITING_PAYMENT, P2PEscrow.State.AWAITING_DELIVERY));
        vm.prank(buyer);
        escrow.dispute(id);

        uint256 confirmed = _confirmed();
        vm.expectRevert(abi.encodeWithSelector(P2PEscrow.NotParty.selector, confirmed, stranger));
        vm.prank(stranger);
        escrow.dispute(confirmed);

        vm.prank(buyer);
        escrow.dispute(confirmed);
        vm.expectRevert(_invalidState(confirmed, P2PEscrow.State.DISPUTED, P2PEscrow.State.AWAITING_DELIVERY));
        vm.prank(seller);
        escrow.dispute(confirmed);
    }

    function test_revert_resolveDispute() public {
        uint256 id = _disputed(buyer);
        bytes32 role = escrow.ARBITER_ROLE();
        vm.expectRevert(
            abi.encodeWithSelector(IAccessControl.AccessControlUnauthorizedAccount.selector, buyer, role)
        );
        vm.prank(buyer);
        escrow.resolveDispute(id, true);

        uint256 confirmed = _confirmed();
        vm.expectRevert(_invalidState(confirmed, P2PEscrow.State.AWAITING_DELIVERY, P2PEscrow.State.DISPUTED));
        vm.prank(arbiter);
        escrow.resolveDispute(confirmed, true);

        vm.prank(arbiter);
        escrow.resolveDispute(id, true);
        vm.expectRevert(_invalidState(id, P2PEscrow.State.COMPLETE, P2PEscrow.State.DISPUTED));
        vm.prank(arbiter);
        escrow.resolveDispute(id, false);
    }

    function test_revert_pauseWithoutRole() public {
        bytes32 role = escrow.PAUSER_ROLE();
        vm.expectRevert(
            abi.encodeWithSelector(IAccessControl.AccessControlUnauthorizedAccount.selector, stranger, role)
        );
        vm.prank(stranger);
        escrow.pause();
    }

    // ----- fuzz -----

    /// Any amount, expiry and path conserves USDC: it ends with the buyer or the seller, never stuck.
    function testFuzz_everyPathConservesFunds(uint256 amount, uint256 expiryOffset, uint8 path) public {
        amount = bound(amount, 1, 1_000_000e6);
        expiryOffset = bound(expiryOffset, 1, 30 days);
        uint256 sellerBefore = usdc.balanceOf(seller);
        vm.prank(seller);
        uint256 id = escrow.createOrder(buyer, amount, uint64(block.timestamp + expiryOffset));
        path = path % 5;
        if (path == 0) {
            vm.prank(seller);
            escrow.cancel(id);
        } else if (path == 1) {
            vm.warp(block.timestamp + expiryOffset);
            escrow.refundExpired(id);
        } else {
            vm.prank(buyer);
            escrow.confirmPayment(id, keccak256(abi.encode(amount)));
            if (path == 2) {
                vm.prank(seller);
                escrow.release(id);
            } else {
                vm.prank(path == 3 ? buyer : seller);
                escrow.dispute(id);
                vm.prank(arbiter);
                escrow.resolveDispute(id, path == 3);
            }
        }
        bool buyerPaid = path == 2 || path == 3;
        assertEq(usdc.balanceOf(buyer), buyerPaid ? amount : 0, "buyer balance");
        assertEq(usdc.balanceOf(seller), buyerPaid ? sellerBefore - amount : sellerBefore, "seller balance");
        assertEq(usdc.balanceOf(address(escrow)), 0, "escrow balance");
    }
}
