// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";
import {Pausable} from "@openzeppelin/contracts/utils/Pausable.sol";
import {ReentrancyGuard} from "@openzeppelin/contracts/utils/ReentrancyGuard.sol";

/// @title P2PEscrow
/// @notice USDC escrow for peer-to-peer fiat trades. The seller of USDC locks it in an
/// order naming the buyer; the buyer pays fiat off-chain and confirms with a proof
/// reference; the seller then releases the USDC to the buyer. Either party can dispute
/// after the buyer confirmed; an arbiter resolves. An unconfirmed order can be cancelled
/// by its seller or refunded by anyone once expired.
///
///   AWAITING_PAYMENT --confirmPayment--> AWAITING_DELIVERY --release--> COMPLETE
///   AWAITING_PAYMENT --cancel | refundExpired--> REFUNDED
///   AWAITING_DELIVERY --dispute--> DISPUTED --resolveDispute--> COMPLETE (buyer paid)
///                                                             | REFUNDED (seller refunded)
///
/// Every event carries what an off-chain ledger needs to rebuild the order without
/// calling the contract.
contract P2PEscrow is AccessControl, Pausable, ReentrancyGuard {
    using SafeERC20 for IERC20;

    enum State {
        NONE,
        AWAITING_PAYMENT,
        AWAITING_DELIVERY,
        DISPUTED,
        COMPLETE,
        REFUNDED
    }

    struct Order {
        address seller;
        uint64 expiry;
        State state;
        address buyer;
        uint256 amount;
        bytes32 paymentProof;
        address disputedBy;
    }

    bytes32 public constant ARBITER_ROLE = keccak256("ARBITER_ROLE");
    bytes32 public constant PAUSER_ROLE = keccak256("PAUSER_ROLE");

    uint8 public constant REPUTATION_INITIAL = 50;
    uint8 public constant REPUTATION_MAX = 100;
    uint8 public constant REPUTATION_REWARD = 1;
    uint8 public constant REPUTATION_PENALTY = 5;
    uint64 public constant EXPIRY_WINDOW_MAX = 30 days;

    IERC20 public immutable usdc;
    uint256 public nextOrderId = 1;
    mapping(uint256 => Order) private _orders;
    /// @dev Stored as reputation + 1 so that 0 means "no order yet" (initial 50).
    mapping(address => uint8) private _reputationPlusOne;

    event OrderCreated(
        uint256 indexed orderId, address indexed seller, address indexed buyer, uint256 amount, uint64 expiry
    );
    event PaymentConfirmed(uint256 indexed orderId, address indexed buyer, bytes32 paymentProof);
    event OrderReleased(uint256 indexed orderId, address indexed seller, address indexed buyer, uint256 amount);
    event OrderCancelled(uint256 indexed orderId, address indexed seller, uint256 amount);
    event OrderExpired(uint256 indexed orderId, address indexed seller, address caller, uint256 amount);
    event OrderDisputed(uint256 indexed orderId, address indexed disputedBy, bool byBuyer);
    /// @param favorBuyer true: the buyer receives the USDC (COMPLETE); false: the seller is refunded (REFUNDED).
    event DisputeResolved(
        uint256 indexed orderId, address indexed arbiter, bool favorBuyer, address recipient, uint256 amount
    );
    event ReputationChanged(address indexed seller, uint8 previous, uint8 current);

    error ZeroAmount();
    error InvalidBuyer(address buyer);
    error InvalidExpiry(uint64 expiry);
    error ZeroAddress();
    error OrderNotFound(uint256 orderId);
    error InvalidState(uint256 orderId, State current, State expected);
    error NotSeller(uint256 orderId, address caller);
    error NotBuyer(uint256 orderId, address caller);
    error NotParty(uint256 orderId, address caller);
    error OrderExpiredAt(uint256 orderId, uint64 expiry);
    error NotExpired(uint256 orderId, uint64 expiry);

    constructor(IERC20 usdc_, address admin, address arbiter) {
        if (address(usdc_) == address(0) || admin == address(0) || arbiter == address(0)) revert ZeroAddress();
        usdc = usdc_;
        _grantRole(DEFAULT_ADMIN_ROLE, admin);
        _grantRole(PAUSER_ROLE, admin);
        _grantRole(ARBITER_ROLE, arbiter);
    }

    // ----- seller -----

    /// @notice Locks `amount` USDC of the caller (the seller) in a new order for `buyer`.
    function createOrder(address buyer, uint256 amount, uint64 expiry)
        external
        whenNotPaused
        nonReentrant
        returns (uint256 orderId)
    {
        if (amount == 0) revert ZeroAmount();
        if (buyer == address(0) || buyer == msg.sender) revert InvalidBuyer(buyer);
        if (expiry <= block.timestamp || expiry > block.timestamp + EXPIRY_WINDOW_MAX) revert InvalidExpiry(expiry);

        orderId = nextOrderId++;
        _orders[orderId] = Order({
            seller: msg.sender,
            expiry: expiry,
            state: State.AWAITING_PAYMENT,
            buyer: buyer,
            amount: amount,
            paymentProof: bytes32(0),
            disputedBy: address(0)
        });
        if (_reputationPlusOne[msg.sender] == 0) _reputationPlusOne[msg.sender] = REPUTATION_INITIAL + 1;
        emit OrderCreated(orderId, msg.sender, buyer, amount, expiry);
        usdc.safeTransferFrom(msg.sender, address(this), amount);
    }

    /// @notice The seller withdraws an order nobody has confirmed payment for.
    function cancel(uint256 orderId) external nonReentrant {
        Order storage order = _existing(orderId);
        if (msg.sender != order.seller) revert NotSeller(orderId, msg.sender);
        _expectState(orderId, order, State.AWAITING_PAYMENT);
        order.state = State.REFUNDED;
        emit OrderCancelled(orderId, order.seller, order.amount);
        usdc.safeTransfer(order.seller, order.amount);
    }

    /// @notice The seller received the fiat and releases the USDC to the buyer.
    function release(uint256 orderId) external whenNotPaused nonReentrant {
        Order storage order = _existing(orderId);
        if (msg.sender != order.seller) revert NotSeller(orderId, msg.sender);
        _expectState(orderId, order, State.AWAITING_DELIVERY);
        order.state = State.COMPLETE;
        emit OrderReleased(orderId, order.seller, order.buyer, order.amount);
        _adjustReputation(order.seller, true);
        usdc.safeTransfer(order.buyer, order.amount);
    }

    // ----- buyer -----

    /// @notice The buyer paid the fiat; `paymentProof` references the proof (a hash, never the data).
    function confirmPayment(uint256 orderId, bytes32 paymentProof) external whenNotPaused {
        Order storage order = _existing(orderId);
        if (msg.sender != order.buyer) revert NotBuyer(orderId, msg.sender);
        _expectState(orderId, order, State.AWAITING_PAYMENT);
        if (block.timestamp >= order.expiry) revert OrderExpiredAt(orderId, order.expiry);
        order.state = State.AWAITING_DELIVERY;
        order.paymentProof = paymentProof;
        emit PaymentConfirmed(orderId, msg.sender, paymentProof);
    }

    // ----- either party, anyone, arbiter -----

    function dispute(uint256 orderId) external whenNotPaused {
        Order storage order = _existing(orderId);
        if (msg.sender != order.buyer && msg.sender != order.seller) revert NotParty(orderId, msg.sender);
        _expectState(orderId, order, State.AWAITING_DELIVERY);
        order.state = State.DISPUTED;
        order.disputedBy = msg.sender;
        emit OrderDisputed(orderId, msg.sender, msg.sender == order.buyer);
    }

    /// @notice Anyone may return an expired, unconfirmed order's USDC to its seller.
    function refundExpired(uint256 orderId) external nonReentrant {
        Order storage order = _existing(orderId);
        _expectState(orderId, order, State.AWAITING_PAYMENT);
        if (block.timestamp < order.expiry) revert NotExpired(orderId, order.expiry);
        order.state = State.REFUNDED;
        emit OrderExpired(orderId, order.seller, msg.sender, order.amount);
        usdc.safeTransfer(order.seller, order.amount);
    }

    /// @notice favorBuyer: the buyer paid and gets the USDC (seller penalised);
    /// otherwise the seller is refunded. Resolving works while paused, so funds never stick.
    function resolveDispute(uint256 orderId, bool favorBuyer) external onlyRole(ARBITER_ROLE) nonReentrant {
        Order storage order = _existing(orderId);
        _expectState(orderId, order, State.DISPUTED);
        address recipient = favorBuyer ? order.buyer : order.seller;
        order.state = favorBuyer ? State.COMPLETE : State.REFUNDED;
        emit DisputeResolved(orderId, msg.sender, favorBuyer, recipient, order.amount);
        if (favorBuyer) _adjustReputation(order.seller, false);
        usdc.safeTransfer(recipient, order.amount);
    }

    function pause() external onlyRole(PAUSER_ROLE) {
        _pause();
    }

    function unpause() external onlyRole(PAUSER_ROLE) {
        _unpause();
    }

    // ----- views -----

    function getOrder(uint256 orderId) external view returns (Order memory) {
        return _orders[orderId];
    }

    /// @notice 0..100; sellers start at 50.
    function reputation(address seller) public view returns (uint8) {
        uint8 stored = _reputationPlusOne[seller];
        return stored == 0 ? REPUTATION_INITIAL : stored - 1;
    }

    // ----- internals -----

    function _existing(uint256 orderId) private view returns (Order storage order) {
        order = _orders[orderId];
        if (order.state == State.NONE) revert OrderNotFound(orderId);
    }

    function _expectState(uint256 orderId, Order storage order, State expected) private view {
        if (order.state != expected) revert InvalidState(orderId, order.state, expected);
    }

    /// @dev Saturates at 0 and REPUTATION_MAX instead of underflowing.
    function _adjustReputation(address seller, bool reward) private {
        uint8 previous = reputation(seller);
        uint8 current;
        if (reward) {
            current = previous >= REPUTATION_MAX - REPUTATION_REWARD ? REPUTATION_MAX : previous + REPUTATION_REWARD;
        } else {
            current = previous <= REPUTATION_PENALTY ? 0 : previous - REPUTATION_PENALTY;
        }
        if (current == previous) return;
        _reputationPlusOne[seller] = current + 1;
        emit ReputationChanged(seller, previous, current);
    }
}
