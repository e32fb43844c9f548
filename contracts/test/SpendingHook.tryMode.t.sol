// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {HookTestBase} from "./utils/HookTestBase.sol";
import {TryAccount} from "./utils/TryAccount.sol";
import {Vm} from "./utils/Vm.sol";
import {ISpendingHook} from "../src/interfaces/ISpendingHook.sol";
import {MockERC20} from "../src/MockERC20.sol";

/// @notice The hook on an account that supports ERC-7579's try exec type. In try mode the account
///         swallows a failed call, so an outflow metered in `preCheck` might never happen: the hook
///         refuses every try-mode execution, and default-mode executions are metered as before.
contract SpendingHookTryModeTest is HookTestBase {
    bytes32 internal constant MODE_SINGLE_TRY = bytes32(bytes2(0x0001));
    bytes32 internal constant MODE_BATCH_TRY = bytes32(bytes2(0x0101));
    bytes32 internal constant REF = bytes32(uint256(0x42));
    uint256 internal constant BALANCE = 10 * USDC;

    TryAccount internal tryAccount;
    address internal executor;

    function setUp() public override {
        super.setUp();
        executor = makeAddr("executor");
        tryAccount = new TryAccount(owner);
        vm.label(address(tryAccount), "tryAccount");
        vm.startPrank(owner);
        tryAccount.installModule(4, address(hook), "");
        tryAccount.installModule(2, executor, "");
        vm.stopPrank();
        token.mint(address(tryAccount), BALANCE);
        vm.deal(address(tryAccount), 1 ether);
    }

    // =============================================================== try mode is refused

    /// A transfer the account cannot pay, in try mode, with a hold's ref: let through, the account
    /// would swallow the failure and the hook would keep a `SpendRecorded` of it.
    function test_RevertWhen_TryExecution_FailingTransfer_NothingMeteredOrLogged() public {
        bytes memory execution = abi.encodePacked(address(token), uint256(0), _transferData(alice, 5_000 * USDC, REF));

        vm.recordLogs();
        vm.prank(owner);
        (bool ok, bytes memory reason) =
            address(tryAccount).call(abi.encodeCall(TryAccount.execute, (MODE_SINGLE_TRY, execution)));
        Vm.Log[] memory logs = vm.getRecordedLogs();

        vm.assertFalse(ok, "try-mode execution refused");
        vm.assertEq(reason, abi.encodeWithSelector(ISpendingHook.TryExecutionRefused.selector), "reason");
        vm.assertEq(_hookLogCount(logs), 0, "no SpendRecorded");
        vm.assertEq(logs.length, 0, "no log at all");
        _assertNothingMetered(address(token));
        vm.assertEq(token.balanceOf(alice), 0, "nothing moved to alice");
        vm.assertEq(token.balanceOf(address(tryAccount)), BALANCE, "account balance kept");
    }

    function test_RevertWhen_TryExecution_SucceedingTransfer() public {
        // Refused whatever the outcome of the call would be: the rule does not depend on balances.
        vm.prank(owner);
        vm.expectRevert(ISpendingHook.TryExecutionRefused.selector);
        tryAccount.execute(
            MODE_SINGLE_TRY, abi.encodePacked(address(token), uint256(0), _transferData(alice, 1 * USDC, REF))
        );
        _assertNothingMetered(address(token));
        vm.assertEq(token.balanceOf(alice), 0, "nothing moved");
    }

    function test_RevertWhen_TryExecution_NativeValue() public {
        vm.prank(owner);
        vm.expectRevert(ISpendingHook.TryExecutionRefused.selector);
        tryAccount.execute(MODE_SINGLE_TRY, abi.encodePacked(alice, uint256(0.5 ether), REF));
        _assertNothingMetered(NATIVE);
        vm.assertEq(alice.balance, 0, "nothing moved");
    }

    function test_RevertWhen_TryExecution_Batch() public {
        TryAccount.Execution[] memory executions = new TryAccount.Execution[](3);
        executions[0] = TryAccount.Execution(address(token), 0, _transferData(alice, 1 * USDC, REF));
        executions[1] = TryAccount.Execution(address(token), 0, _transferData(bob, 5_000 * USDC, REF));
        executions[2] = TryAccount.Execution(bob, 0.1 ether, "");
        vm.prank(owner);
        vm.expectRevert(ISpendingHook.TryExecutionRefused.selector);
        tryAccount.execute(MODE_BATCH_TRY, abi.encode(executions));
        _assertNothingMetered(address(token));
        _assertNothingMetered(NATIVE);
    }

    function test_RevertWhen_TryExecution_MeteringNothing() public {
        // The rule is the exec type, not what the calls do: a call that moves nothing, and an
        // empty batch, are refused in try mode too.
        vm.startPrank(owner);
        vm.expectRevert(ISpendingHook.TryExecutionRefused.selector);
        tryAccount.execute(
            MODE_SINGLE_TRY,
            abi.encodePacked(
                address(token), uint256(0), abi.encodeWithSelector(token.balanceOf.selector, address(tryAccount))
            )
        );
        vm.expectRevert(ISpendingHook.TryExecutionRefused.selector);
        tryAccount.execute(MODE_BATCH_TRY, abi.encode(new TryAccount.Execution[](0)));
        vm.stopPrank();
    }

    function test_RevertWhen_TryExecutionFromExecutor() public {
        vm.recordLogs();
        vm.prank(executor);
        (bool ok, bytes memory reason) = address(tryAccount)
            .call(
                abi.encodeCall(
                    TryAccount.executeFromExecutor,
                    (
                        MODE_SINGLE_TRY,
                        abi.encodePacked(address(token), uint256(0), _transferData(bob, 5_000 * USDC, REF))
                    )
                )
            );
        vm.assertFalse(ok, "refused");
        vm.assertEq(reason, abi.encodeWithSelector(ISpendingHook.TryExecutionRefused.selector), "reason");
        vm.assertEq(_hookLogCount(vm.getRecordedLogs()), 0, "no SpendRecorded");
        _assertNothingMetered(address(token));
    }

    function test_RevertWhen_NestedTryExecution() public {
        // A default-mode execution whose call is the account's own `execute` in try mode: the inner
        // execution runs the hook again, which refuses it, and the default outer one reverts with it.
        bytes memory inner = abi.encodeCall(
            TryAccount.execute,
            (MODE_SINGLE_TRY, abi.encodePacked(address(token), uint256(0), _transferData(alice, 5_000 * USDC, REF)))
        );
        vm.prank(owner);
        vm.expectRevert(ISpendingHook.TryExecutionRefused.selector);
        tryAccount.execute(MODE_SINGLE, abi.encodePacked(address(tryAccount), uint256(0), inner));
        _assertNothingMetered(address(token));
    }

    function testFuzz_RevertWhen_TryExecType(bytes32 mode, bool viaExecutor, bytes memory executionCalldata) public {
        // Exec type (second byte) 0x01, any call type and any other mode bytes, any execution.
        mode = bytes32((uint256(mode) & ~(uint256(0xff) << 240)) | (uint256(0x01) << 240));
        bytes4 selector = viaExecutor ? TryAccount.executeFromExecutor.selector : TryAccount.execute.selector;
        bytes memory msgData = abi.encodeWithSelector(selector, mode, executionCalldata);
        vm.prank(address(tryAccount));
        vm.expectRevert(ISpendingHook.TryExecutionRefused.selector);
        hook.preCheck(owner, 0, msgData);
    }

    // =============================================================== default mode is unchanged

    function test_DefaultExecution_IsMetered() public {
        _setTryAccountLimits(address(token), 2 * USDC, 0, 0, 0);
        vm.expectEmit(true, true, true, true, address(hook));
        emit ISpendingHook.SpendRecorded(address(tryAccount), address(token), owner, alice, 2 * USDC, 0, 2 * USDC, REF);
        vm.prank(owner);
        tryAccount.execute(
            MODE_SINGLE, abi.encodePacked(address(token), uint256(0), _transferData(alice, 2 * USDC, REF))
        );
        vm.assertEq(token.balanceOf(alice), 2 * USDC, "alice paid");
        vm.assertEq(hook.spendState(address(tryAccount), address(token)).cumulativeSpent, 2 * USDC, "counted");

        // The limits still apply in default mode.
        vm.prank(owner);
        vm.expectRevert(
            abi.encodeWithSelector(ISpendingHook.PerTxLimitExceeded.selector, address(token), 3 * USDC, 2 * USDC)
        );
        tryAccount.execute(
            MODE_SINGLE, abi.encodePacked(address(token), uint256(0), _transferData(alice, 3 * USDC, REF))
        );
    }

    function test_DefaultBatchFromExecutor_IsMetered() public {
        TryAccount.Execution[] memory executions = new TryAccount.Execution[](2);
        executions[0] = TryAccount.Execution(address(token), 0, _transferData(alice, 1 * USDC, REF));
        executions[1] = TryAccount.Execution(bob, 0.25 ether, "");
        vm.expectEmit(true, true, true, true, address(hook));
        emit ISpendingHook.SpendRecorded(
            address(tryAccount), address(token), executor, alice, 1 * USDC, 0, 1 * USDC, REF
        );
        vm.expectEmit(true, true, true, true, address(hook));
        emit ISpendingHook.SpendRecorded(address(tryAccount), NATIVE, executor, bob, 0.25 ether, 0, 0.25 ether, 0);
        vm.prank(executor);
        tryAccount.executeFromExecutor(MODE_BATCH, abi.encode(executions));
        vm.assertEq(token.balanceOf(alice), 1 * USDC, "alice paid");
        vm.assertEq(bob.balance, 0.25 ether, "bob paid");
    }

    function test_DefaultExecution_FailedCall_RevertsCountersAndLogs() public {
        // In default mode a failed call reverts the whole execution, the hook's record of it included.
        vm.prank(owner);
        vm.expectRevert(
            abi.encodeWithSelector(MockERC20.InsufficientBalance.selector, address(tryAccount), BALANCE, 5_000 * USDC)
        );
        tryAccount.execute(
            MODE_SINGLE, abi.encodePacked(address(token), uint256(0), _transferData(alice, 5_000 * USDC, REF))
        );
        _assertNothingMetered(address(token));
    }

    // =============================================================== helpers

    function _setTryAccountLimits(
        address asset,
        uint256 perTx,
        uint256 perWindow,
        uint32 windowSeconds,
        uint256 cumulative
    ) internal {
        vm.prank(owner);
        tryAccount.execute(
            MODE_SINGLE,
            abi.encodePacked(
                address(hook),
                uint256(0),
                abi.encodeCall(hook.setLimits, (asset, perTx, perWindow, windowSeconds, cumulative))
            )
        );
    }

    function _assertNothingMetered(address asset) internal view {
        ISpendingHook.SpendState memory s = hook.spendState(address(tryAccount), asset);
        vm.assertEq(s.cumulativeSpent, 0, "cumulativeSpent");
        vm.assertEq(s.windowSpent, 0, "windowSpent");
        vm.assertEq(s.windowStart, 0, "windowStart");
    }
}
