// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {Test} from "./utils/Test.sol";
import {Vm} from "./utils/Vm.sol";
import {SpendingHook} from "../src/SpendingHook.sol";
import {ISpendingHook} from "../src/interfaces/ISpendingHook.sol";
import {MinimalAccount} from "../src/MinimalAccount.sol";
import {MockERC20} from "../src/MockERC20.sol";

/// @notice Owns an account with the hook installed and spends from it at random. Every call either
///         succeeds and adds to the ghost totals, or reverts with one of the hook's limit errors;
///         anything else fails the run (`fail_on_revert = true`).
contract SpendingHookHandler {
    Vm internal constant vm = Vm(0x7109709ECfa91a80626fF3989D68f67F5b1DD12D);

    uint256 public constant PER_TX = 100e6;
    uint256 public constant PER_WINDOW = 250e6;
    uint32 public constant WINDOW_SECONDS = 1 hours;
    uint256 public constant CUMULATIVE = 2_000e6;
    uint256 public constant NATIVE_PER_WINDOW = 3 ether;
    uint256 public constant NATIVE_CUMULATIVE = 15 ether;

    SpendingHook public immutable hook;
    MockERC20 public immutable token;
    MinimalAccount public immutable account;

    /// @notice Sum of the amounts of every successful metered outflow, per token.
    mapping(address token => uint256) public ghostSpent;
    /// @notice Calls that reverted with a limit error.
    uint256 public ghostRefused;

    constructor(SpendingHook hook_, MockERC20 token_) {
        hook = hook_;
        token = token_;
        account = new MinimalAccount(address(this));
        token.mint(address(account), 1_000_000e6);
        vm.deal(address(account), 1_000 ether);
        // Allowance for transferFrom(account, ...) set before the hook is installed, so it is not metered.
        _execute(address(token), 0, abi.encodeCall(MockERC20.approve, (address(account), type(uint256).max)));

        ISpendingHook.LimitConfig[] memory configs = new ISpendingHook.LimitConfig[](2);
        configs[0] = ISpendingHook.LimitConfig(address(token), PER_TX, PER_WINDOW, WINDOW_SECONDS, CUMULATIVE);
        configs[1] = ISpendingHook.LimitConfig(address(0), 0, NATIVE_PER_WINDOW, WINDOW_SECONDS, NATIVE_CUMULATIVE);
        account.installModule(4, address(hook), abi.encode(configs));
    }

    function transfer(uint256 amount, address to, bytes32 ref) external {
        amount = _amount(amount);
        _meter(
            address(token),
            amount,
            to,
            address(token),
            0,
            abi.encodePacked(abi.encodeCall(MockERC20.transfer, (to, amount)), ref)
        );
    }

    function transferFromAccount(uint256 amount, address to) external {
        amount = _amount(amount);
        _meter(
            address(token),
            amount,
            to,
            address(token),
            0,
            abi.encodeCall(MockERC20.transferFrom, (address(account), to, amount))
        );
    }

    function approve(uint256 amount, address spender) external {
        amount = _amount(amount);
        if (spender == address(account)) spender = address(1); // keep the account's own allowance unlimited
        _meter(address(token), amount, spender, address(token), 0, abi.encodeCall(MockERC20.approve, (spender, amount)));
    }

    function sendNative(uint256 amount) external {
        amount = amount % 2 ether;
        _meter(address(0), amount, address(0xBEEF), address(0xBEEF), amount, "");
    }

    function batch(uint256 tokenAmount, uint256 nativeAmount) external {
        tokenAmount = _amount(tokenAmount);
        nativeAmount = nativeAmount % 2 ether;
        MinimalAccount.Execution[] memory executions = new MinimalAccount.Execution[](2);
        executions[0] = MinimalAccount.Execution(
            address(token), 0, abi.encodeCall(MockERC20.transfer, (address(0xCAFE), tokenAmount))
        );
        executions[1] = MinimalAccount.Execution(address(0xBEEF), nativeAmount, "");
        try account.execute(bytes32(bytes1(0x01)), abi.encode(executions)) {
            ghostSpent[address(token)] += tokenAmount;
            ghostSpent[address(0)] += nativeAmount;
        } catch (bytes memory reason) {
            _expectLimitError(reason);
        }
    }

    function warp(uint256 secondsForward) external {
        vm.warp(block.timestamp + secondsForward % (2 * uint256(WINDOW_SECONDS)));
    }

    function _amount(uint256 seed) internal pure returns (uint256) {
        return seed % (PER_TX + PER_TX / 2);
    }

    /// @dev An outflow to the account itself moves nothing out: the hook does not meter it.
    function _meter(
        address asset,
        uint256 amount,
        address recipient,
        address target,
        uint256 value,
        bytes memory callData
    ) internal {
        try account.execute(
            bytes32(0), abi.encodePacked(target == address(0) ? address(0xBEEF) : target, value, callData)
        ) {
            if (recipient != address(account)) ghostSpent[asset] += amount;
        } catch (bytes memory reason) {
            _expectLimitError(reason);
        }
    }

    function _execute(address target, uint256 value, bytes memory callData) internal {
        account.execute(bytes32(0), abi.encodePacked(target, value, callData));
    }

    function _expectLimitError(bytes memory reason) internal {
        // casting to 'bytes4' is safe because only the selector is compared
        // forge-lint: disable-next-line(unsafe-typecast)
        bytes4 selector = bytes4(reason);
        if (
            selector != ISpendingHook.PerTxLimitExceeded.selector
                && selector != ISpendingHook.WindowLimitExceeded.selector
                && selector != ISpendingHook.CumulativeLimitExceeded.selector
        ) {
            assembly {
                revert(add(reason, 32), mload(reason))
            }
        }
        ++ghostRefused;
    }
}

contract SpendingHookInvariantTest is Test {
    SpendingHook internal hook;
    MockERC20 internal token;
    SpendingHookHandler internal handler;

    function setUp() public {
        vm.warp(1_700_000_000);
        hook = new SpendingHook();
        token = new MockERC20("Mock USD", "mUSD");
        handler = new SpendingHookHandler(hook, token);
        targetContract(address(handler));
    }

    /// @dev Run by forge after each invariant run: the handler must actually have hit the limits, or the
    ///      invariants would hold vacuously. (When forge replays a saved, shrunk failure from cache/, this
    ///      may fail first: run `forge clean` to see the original failure.)
    function afterInvariant() public view {
        vm.assertTrue(handler.ghostRefused() > 0, "some spend was refused by a limit");
    }

    function invariant_CumulativeSpentNeverExceedsLimit() public view {
        address account = address(handler.account());
        vm.assertLe(hook.spendState(account, address(token)).cumulativeSpent, handler.CUMULATIVE(), "token");
        vm.assertLe(hook.spendState(account, address(0)).cumulativeSpent, handler.NATIVE_CUMULATIVE(), "native");
    }

    /// @dev Holds because the handler never lowers a limit: lowering `perWindow` below what the current
    ///      window has spent is allowed and leaves `windowSpent` above it until the window rolls over.
    function invariant_WindowSpentNeverExceedsLimit() public view {
        address account = address(handler.account());
        vm.assertLe(hook.spendState(account, address(token)).windowSpent, handler.PER_WINDOW(), "token");
        vm.assertLe(hook.spendState(account, address(0)).windowSpent, handler.NATIVE_PER_WINDOW(), "native");
    }

    function invariant_CumulativeSpentIsSumOfSuccessfulSpends() public view {
        address account = address(handler.account());
        vm.assertEq(
            hook.spendState(account, address(token)).cumulativeSpent, handler.ghostSpent(address(token)), "token"
        );
        vm.assertEq(hook.spendState(account, address(0)).cumulativeSpent, handler.ghostSpent(address(0)), "native");
    }

    function invariant_WindowStartIsNeverInTheFuture() public view {
        address account = address(handler.account());
        ISpendingHook.SpendState memory s = hook.spendState(account, address(token));
        vm.assertLe(s.windowStart, block.timestamp, "window start in the past");
    }
}
