// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {HookTestBase} from "./utils/HookTestBase.sol";
import {ISpendingHook} from "../src/interfaces/ISpendingHook.sol";
import {MinimalAccount} from "../src/MinimalAccount.sol";
import {MockERC20} from "../src/MockERC20.sol";

contract SpendingHookTest is HookTestBase {
    bytes32 internal constant REF = keccak256("hold-42");

    // =============================================================== module lifecycle

    function test_IsModuleType_OnlyHook() public view {
        vm.assertTrue(hook.isModuleType(4), "type 4");
        for (uint256 typeId = 0; typeId < 8; ++typeId) {
            if (typeId != 4) vm.assertFalse(hook.isModuleType(typeId), "other type");
        }
    }

    function test_OnInstall_MarksInitialized() public view {
        vm.assertTrue(hook.isInitialized(address(account)), "installed account");
        vm.assertFalse(hook.isInitialized(alice), "other address");
        vm.assertEq(account.hook(), address(hook), "account's hook");
    }

    function test_OnInstall_SetsInitialLimits() public {
        MinimalAccount other = new MinimalAccount(owner);
        ISpendingHook.LimitConfig[] memory configs = new ISpendingHook.LimitConfig[](2);
        configs[0] = ISpendingHook.LimitConfig(address(token), 10 * USDC, 50 * USDC, HOUR, 500 * USDC);
        configs[1] = ISpendingHook.LimitConfig(NATIVE, 1 ether, 0, 0, 0);

        vm.expectEmit(true, true, true, true, address(hook));
        emit ISpendingHook.LimitsSet(address(other), address(token), 10 * USDC, 50 * USDC, HOUR, 500 * USDC);
        vm.expectEmit(true, true, true, true, address(hook));
        emit ISpendingHook.LimitsSet(address(other), NATIVE, 1 ether, 0, 0, 0);
        vm.prank(owner);
        other.installModule(4, address(hook), abi.encode(configs));

        ISpendingHook.SpendState memory s = hook.spendState(address(other), address(token));
        vm.assertEq(s.perTx, 10 * USDC, "perTx");
        vm.assertEq(s.perWindow, 50 * USDC, "perWindow");
        vm.assertEq(s.windowSeconds, HOUR, "windowSeconds");
        vm.assertEq(s.cumulative, 500 * USDC, "cumulative");
        vm.assertEq(hook.spendState(address(other), NATIVE).perTx, 1 ether, "native perTx");
    }

    function test_RevertWhen_InstalledTwice() public {
        vm.prank(address(account));
        vm.expectRevert(abi.encodeWithSelector(ISpendingHook.AlreadyInitialized.selector, address(account)));
        hook.onInstall("");
    }

    function test_RevertWhen_InitialLimitsHaveWindowLimitWithoutWindow() public {
        ISpendingHook.LimitConfig[] memory configs = new ISpendingHook.LimitConfig[](1);
        configs[0] = ISpendingHook.LimitConfig(address(token), 0, 50 * USDC, 0, 0);
        vm.prank(alice);
        vm.expectRevert(abi.encodeWithSelector(ISpendingHook.InvalidWindow.selector, address(token)));
        hook.onInstall(abi.encode(configs));
    }

    function test_OnUninstall_KeepsLimitsAndCounters() public {
        _setLimits(address(token), 0, 0, 0, 100 * USDC);
        _executeSingle(address(token), 0, _transferData(alice, 30 * USDC, REF));

        vm.prank(owner);
        account.uninstallModule(4, address(hook), "");
        vm.assertFalse(hook.isInitialized(address(account)), "uninstalled");

        vm.prank(owner);
        account.installModule(4, address(hook), "");
        vm.assertEq(_state(address(token)).cumulative, 100 * USDC, "limit kept");
        vm.assertEq(_state(address(token)).cumulativeSpent, 30 * USDC, "counter kept");
    }

    function test_RevertWhen_UninstalledTwice() public {
        vm.startPrank(address(account));
        hook.onUninstall("");
        vm.expectRevert(abi.encodeWithSelector(ISpendingHook.NotInitialized.selector, address(account)));
        hook.onUninstall("");
        vm.stopPrank();
    }

    function test_RevertWhen_PreCheckFromUninitializedAccount() public {
        bytes memory msgData =
            abi.encodeCall(MinimalAccount.execute, (MODE_SINGLE, abi.encodePacked(alice, uint256(1 ether), "")));
        vm.prank(alice);
        vm.expectRevert(abi.encodeWithSelector(ISpendingHook.NotInitialized.selector, alice));
        hook.preCheck(alice, 0, msgData);
    }

    function test_PostCheck_DoesNothing() public {
        vm.prank(address(account));
        hook.postCheck("");
    }

    // =============================================================== limits and access control

    function test_SetLimits_EmitsLimitsSetAndStores() public {
        vm.expectEmit(true, true, true, true, address(hook));
        emit ISpendingHook.LimitsSet(address(account), address(token), 10 * USDC, 40 * USDC, HOUR, 100 * USDC);
        _setLimits(address(token), 10 * USDC, 40 * USDC, HOUR, 100 * USDC);

        ISpendingHook.SpendState memory s = _state(address(token));
        vm.assertEq(s.perTx, 10 * USDC, "perTx");
        vm.assertEq(s.perWindow, 40 * USDC, "perWindow");
        vm.assertEq(s.windowSeconds, HOUR, "windowSeconds");
        vm.assertEq(s.cumulative, 100 * USDC, "cumulative");
        vm.assertEq(s.windowStart, 0, "windowStart");
        vm.assertEq(s.windowSpent, 0, "windowSpent");
        vm.assertEq(s.cumulativeSpent, 0, "cumulativeSpent");
    }

    function test_SetLimits_KeepsCounters() public {
        _setLimits(address(token), 0, 100 * USDC, HOUR, 0);
        _executeSingle(address(token), 0, _transferData(alice, 30 * USDC, REF));
        _setLimits(address(token), 0, 50 * USDC, HOUR, 0);

        ISpendingHook.SpendState memory s = _state(address(token));
        vm.assertEq(s.windowSpent, 30 * USDC, "windowSpent kept");
        vm.assertEq(s.cumulativeSpent, 30 * USDC, "cumulativeSpent kept");
        vm.expectRevert(
            abi.encodeWithSelector(ISpendingHook.WindowLimitExceeded.selector, address(token), 21 * USDC, 20 * USDC)
        );
        _executeSingle(address(token), 0, _transferData(alice, 21 * USDC, REF));
    }

    function test_RevertWhen_SetLimitsWithWindowLimitAndNoWindow() public {
        vm.expectRevert(abi.encodeWithSelector(ISpendingHook.InvalidWindow.selector, address(token)));
        _setLimits(address(token), 0, 40 * USDC, 0, 0);
    }

    function test_SetLimits_WindowWithoutWindowLimit() public {
        _setLimits(address(token), 0, 0, HOUR, 0);
        _expectSpend(address(token), alice, 5 * USDC, 5 * USDC, 5 * USDC, REF);
        _executeSingle(address(token), 0, _transferData(alice, 5 * USDC, REF));
    }

    function test_RevertWhen_SetLimitsFromUninstalledCaller() public {
        vm.prank(alice);
        vm.expectRevert(abi.encodeWithSelector(ISpendingHook.NotInitialized.selector, alice));
        hook.setLimits(address(token), 0, 0, 0, 0);
    }

    function test_SetLimits_OnlyChangesTheCallersOwnLimits() public {
        _setLimits(address(token), 10 * USDC, 0, 0, 0);

        // Another account that installed the same hook can only write its own limits.
        vm.startPrank(alice);
        hook.onInstall("");
        hook.setLimits(address(token), 0, 0, 0, 0);
        vm.stopPrank();

        vm.assertEq(_state(address(token)).perTx, 10 * USDC, "account's limit untouched");
        vm.expectRevert(
            abi.encodeWithSelector(ISpendingHook.PerTxLimitExceeded.selector, address(token), 11 * USDC, 10 * USDC)
        );
        _executeSingle(address(token), 0, _transferData(alice, 11 * USDC, REF));
    }

    function test_RevertWhen_StrangerExecutesThroughTheAccount() public {
        vm.prank(alice);
        vm.expectRevert(abi.encodeWithSelector(MinimalAccount.Unauthorized.selector, alice));
        account.execute(MODE_SINGLE, abi.encodePacked(address(hook), uint256(0), ""));
    }

    // =============================================================== metered calls

    function test_Transfer_RecordsSpend() public {
        _expectSpend(address(token), alice, 25 * USDC, 0, 25 * USDC, REF);
        _executeSingle(address(token), 0, _transferData(alice, 25 * USDC, REF));

        vm.assertEq(token.balanceOf(alice), 25 * USDC, "alice paid");
        ISpendingHook.SpendState memory s = _state(address(token));
        vm.assertEq(s.cumulativeSpent, 25 * USDC, "cumulativeSpent");
        vm.assertEq(s.windowSpent, 0, "no window");
        vm.assertEq(s.windowStart, 0, "no window start");
    }

    function test_Transfer_WithoutRef_RecordsZeroRef() public {
        _expectSpend(address(token), alice, 1 * USDC, 0, 1 * USDC, bytes32(0));
        _executeSingle(address(token), 0, abi.encodeCall(MockERC20.transfer, (alice, 1 * USDC)));
    }

    function test_Transfer_RefIsTheWordAfterTheArguments() public {
        // Bytes past the ref word are ignored; the ref is exactly callData[68:100].
        bytes memory data = abi.encodePacked(_transferData(alice, 1 * USDC, REF), bytes32(uint256(7)));
        _expectSpend(address(token), alice, 1 * USDC, 0, 1 * USDC, REF);
        _executeSingle(address(token), 0, data);
    }

    function test_Transfer_PartialRef_RecordsZeroRef() public {
        // casting to 'bytes31' is safe because truncating the ref is the point: only 31 bytes follow
        // forge-lint: disable-next-line(unsafe-typecast)
        bytes memory data = abi.encodePacked(abi.encodeCall(MockERC20.transfer, (alice, 1 * USDC)), bytes31(REF));
        _expectSpend(address(token), alice, 1 * USDC, 0, 1 * USDC, bytes32(0));
        _executeSingle(address(token), 0, data);
    }

    function test_TransferFrom_FromAccount_RecordsSpend() public {
        // The account's approval of itself moves nothing out: not metered.
        _executeSingle(address(token), 0, abi.encodeCall(MockERC20.approve, (address(account), 100 * USDC)));
        vm.assertEq(_state(address(token)).cumulativeSpent, 0, "self-approval not metered");

        _expectSpend(address(token), bob, 40 * USDC, 0, 40 * USDC, REF);
        _executeSingle(address(token), 0, _transferFromData(address(account), bob, 40 * USDC, REF));
        vm.assertEq(token.balanceOf(bob), 40 * USDC, "bob paid");
    }

    function test_TransferFrom_FromSomeoneElse_NotMetered() public {
        token.mint(alice, 100 * USDC);
        vm.prank(alice);
        token.approve(address(account), 100 * USDC);

        vm.recordLogs();
        _executeSingle(address(token), 0, _transferFromData(alice, bob, 40 * USDC, REF));
        vm.assertEq(_hookLogCount(vm.getRecordedLogs()), 0, "no hook log");
        vm.assertEq(token.balanceOf(bob), 40 * USDC, "bob paid by alice");
        vm.assertEq(_state(address(token)).cumulativeSpent, 0, "nothing metered");
    }

    function test_Approve_RecordsSpendToSpender() public {
        _expectSpend(address(token), bob, 70 * USDC, 0, 70 * USDC, REF);
        _executeSingle(address(token), 0, _approveData(bob, 70 * USDC, REF));
        vm.assertEq(token.allowance(address(account), bob), 70 * USDC, "allowance");
    }

    function test_Approve_MaxTwiceWithoutLimits_Saturates() public {
        _executeSingle(address(token), 0, abi.encodeCall(MockERC20.approve, (bob, type(uint256).max)));
        _expectSpend(address(token), alice, type(uint256).max, 0, type(uint256).max, bytes32(0));
        _executeSingle(address(token), 0, abi.encodeCall(MockERC20.approve, (alice, type(uint256).max)));
    }

    function test_Native_RecordsSpendToTarget() public {
        _expectSpend(NATIVE, alice, 1 ether, 0, 1 ether, bytes32(0));
        _executeSingle(alice, 1 ether, "");
        vm.assertEq(alice.balance, 1 ether, "alice paid");
    }

    function test_Native_With32ByteCallData_RecordsRef() public {
        _expectSpend(NATIVE, alice, 1 ether, 0, 1 ether, REF);
        _executeSingle(alice, 1 ether, abi.encodePacked(REF));
    }

    function test_Native_WithOtherCallData_RecordsZeroRef() public {
        _expectSpend(NATIVE, alice, 1 ether, 0, 1 ether, bytes32(0));
        _executeSingle(alice, 1 ether, abi.encodePacked(REF, uint8(1)));
    }

    function test_ZeroValueCall_NotMetered() public {
        vm.recordLogs();
        _executeSingle(address(token), 0, abi.encodeCall(MockERC20.mint, (alice, 5 * USDC)));
        _executeSingle(alice, 0, "");
        vm.assertEq(_hookLogCount(vm.getRecordedLogs()), 0, "no hook log");
    }

    function test_NonExecuteCall_NotMetered() public {
        bytes memory msgData = abi.encodeCall(MinimalAccount.installModule, (4, address(hook), ""));
        vm.recordLogs();
        vm.prank(address(account));
        bytes memory hookData = hook.preCheck(owner, 0, msgData);
        vm.assertEq(hookData.length, 0, "empty hook data");
        vm.assertEq(_hookLogCount(vm.getRecordedLogs()), 0, "no hook log");

        vm.prank(address(account));
        hook.preCheck(owner, 0, hex"e9ae5c");
    }

    function test_ExecuteFromExecutor_IsMetered() public {
        bytes memory msgData = abi.encodeWithSelector(
            bytes4(0xd691c964), MODE_SINGLE, abi.encodePacked(address(token), uint256(0), _transferData(bob, 3, REF))
        );
        vm.expectEmit(true, true, true, true, address(hook));
        emit ISpendingHook.SpendRecorded(address(account), address(token), alice, bob, 3, 0, 3, REF);
        vm.prank(address(account));
        hook.preCheck(alice, 0, msgData);
    }

    function test_RevertWhen_TryExecType() public {
        // In try mode the account would swallow a failed call, so an outflow logged here might never
        // happen: refused (see SpendingHook.tryMode.t.sol for an account that supports try mode).
        bytes32 mode = bytes32(bytes2(0x0001));
        bytes memory msgData =
            abi.encodeCall(MinimalAccount.execute, (mode, abi.encodePacked(alice, uint256(2 ether), "")));
        vm.prank(address(account));
        vm.expectRevert(ISpendingHook.TryExecutionRefused.selector);
        hook.preCheck(owner, 0, msgData);
    }

    function test_ShortTransferCallData_ReadsMissingBytesAsZero() public {
        // 4 + 32 + 16 bytes: the token would read the amount as the 16 bytes followed by zeros.
        bytes memory callData = abi.encodePacked(
            MockERC20.transfer.selector, uint256(uint160(bob)), bytes16(0x00000000000000000000000000000001)
        );
        uint256 amount = uint256(1) << 128;
        bytes memory msgData = abi.encodeCall(
            MinimalAccount.execute, (MODE_SINGLE, abi.encodePacked(address(token), uint256(0), callData))
        );
        _expectSpend(address(token), bob, amount, 0, amount, bytes32(0));
        vm.prank(address(account));
        hook.preCheck(owner, 0, msgData);
    }

    function test_NestedExecute_IsMeteredWithTheAccountAsSender() public {
        bytes memory inner = abi.encodeCall(
            MinimalAccount.execute,
            (MODE_SINGLE, abi.encodePacked(address(token), uint256(0), _transferData(alice, 2 * USDC, REF)))
        );
        vm.expectEmit(true, true, true, true, address(hook));
        emit ISpendingHook.SpendRecorded(
            address(account), address(token), address(account), alice, 2 * USDC, 0, 2 * USDC, REF
        );
        _executeSingle(address(account), 0, inner);
    }

    function test_CallToAddressZero_IsNotATokenOutflow() public {
        // address(0) stands for the native token; an ERC-20 call to it moves nothing.
        _setLimits(NATIVE, 0, 0, 0, 1 ether);
        vm.recordLogs();
        _executeSingle(NATIVE, 0, _transferData(bob, 1 ether, REF));
        _executeSingle(NATIVE, 0, _approveData(bob, 1 ether, REF));
        vm.assertEq(_hookLogCount(vm.getRecordedLogs()), 0, "no hook log");
        vm.assertEq(_state(NATIVE).cumulativeSpent, 0, "native counters untouched");
        // Native value sent to address(0) is still an outflow.
        _expectSpend(NATIVE, NATIVE, 1 ether, 0, 1 ether, bytes32(0));
        _executeSingle(NATIVE, 1 ether, "");
    }

    // =============================================================== protected calls

    function test_RevertWhen_ExecutionCallsOnUninstall() public {
        bytes memory callData = abi.encodeCall(ISpendingHook.onUninstall, (""));
        vm.expectRevert(
            abi.encodeWithSelector(
                ISpendingHook.ProtectedCall.selector, address(hook), ISpendingHook.onUninstall.selector
            )
        );
        _executeSingle(address(hook), 0, callData);
        vm.assertTrue(hook.isInitialized(address(account)), "still initialized");
        // The account still spends, metered.
        _expectSpend(address(token), bob, 1, 0, 1, REF);
        _executeSingle(address(token), 0, _transferData(bob, 1, REF));
    }

    function test_RevertWhen_ExecutionCallsPreCheckOrOnInstall() public {
        // A direct preCheck would log an outflow that never happened.
        bytes memory fake = abi.encodeCall(
            MinimalAccount.execute,
            (MODE_SINGLE, abi.encodePacked(address(token), uint256(0), _transferData(bob, 5, REF)))
        );
        bytes memory callData = abi.encodeCall(ISpendingHook.preCheck, (owner, 0, fake));
        vm.expectRevert(
            abi.encodeWithSelector(ISpendingHook.ProtectedCall.selector, address(hook), ISpendingHook.preCheck.selector)
        );
        _executeSingle(address(hook), 0, callData);

        callData = abi.encodeCall(ISpendingHook.onInstall, (""));
        vm.expectRevert(
            abi.encodeWithSelector(
                ISpendingHook.ProtectedCall.selector, address(hook), ISpendingHook.onInstall.selector
            )
        );
        _executeSingle(address(hook), 0, callData);
    }

    function test_RevertWhen_ExecutorSetsLimits() public {
        _setLimits(address(token), 0, 0, 0, 10 * USDC);
        bytes memory lift = abi.encodeCall(ISpendingHook.setLimits, (address(token), 0, 0, 0, 0));
        bytes memory msgData =
            abi.encodeWithSelector(bytes4(0xd691c964), MODE_SINGLE, abi.encodePacked(address(hook), uint256(0), lift));
        vm.expectRevert(
            abi.encodeWithSelector(
                ISpendingHook.ProtectedCall.selector, address(hook), ISpendingHook.setLimits.selector
            )
        );
        vm.prank(address(account));
        hook.preCheck(alice, 0, msgData);
        // Nor through the account's own execute, called by itself for the executor.
        bytes memory nested =
            abi.encodeCall(MinimalAccount.execute, (MODE_SINGLE, abi.encodePacked(address(hook), uint256(0), lift)));
        msgData = abi.encodeWithSelector(
            bytes4(0xd691c964), MODE_SINGLE, abi.encodePacked(address(account), uint256(0), nested)
        );
        vm.expectRevert(
            abi.encodeWithSelector(
                ISpendingHook.ProtectedCall.selector, address(account), MinimalAccount.execute.selector
            )
        );
        vm.prank(address(account));
        hook.preCheck(alice, 0, msgData);
        // An executor still spends, metered.
        msgData = abi.encodeWithSelector(
            bytes4(0xd691c964), MODE_SINGLE, abi.encodePacked(address(token), uint256(0), _transferData(bob, 1, REF))
        );
        vm.expectEmit(true, true, true, true, address(hook));
        emit ISpendingHook.SpendRecorded(address(account), address(token), alice, bob, 1, 0, 1, REF);
        vm.prank(address(account));
        hook.preCheck(alice, 0, msgData);
        // Through execute, the account sets its own limits.
        msgData =
            abi.encodeCall(MinimalAccount.execute, (MODE_SINGLE, abi.encodePacked(address(hook), uint256(0), lift)));
        vm.prank(address(account));
        hook.preCheck(owner, 0, msgData);
    }

    function test_RevertWhen_BatchUninstallsSpendsAndReinstalls() public {
        _setLimits(address(token), 0, 0, 0, 10 * USDC);
        MinimalAccount.Execution[] memory ex = new MinimalAccount.Execution[](3);
        ex[0] = _execution(address(account), 0, abi.encodeCall(MinimalAccount.uninstallModule, (4, address(hook), "")));
        ex[1] = _execution(
            address(account),
            0,
            abi.encodeCall(
                MinimalAccount.execute,
                (MODE_SINGLE, abi.encodePacked(address(token), uint256(0), _transferData(bob, 1_000 * USDC, REF)))
            )
        );
        ex[2] = _execution(address(account), 0, abi.encodeCall(MinimalAccount.installModule, (4, address(hook), "")));
        vm.expectRevert(
            abi.encodeWithSelector(
                ISpendingHook.ProtectedCall.selector, address(account), MinimalAccount.uninstallModule.selector
            )
        );
        _executeBatch(ex);
        vm.assertEq(token.balanceOf(bob), 0, "nothing left");

        // Uninstalling another module from an execution is the account's business.
        address other = makeAddr("other");
        vm.expectRevert(abi.encodeWithSelector(MinimalAccount.ModuleNotInstalled.selector, 4, other));
        _executeSingle(address(account), 0, abi.encodeCall(MinimalAccount.uninstallModule, (4, other, "")));

        // The owner still uninstalls the hook in a call of its own.
        vm.prank(owner);
        account.uninstallModule(4, address(hook), "");
        vm.assertEq(account.hook(), address(0), "uninstalled");
    }

    // =============================================================== batch

    function test_Batch_RecordsEverySpendInOrder() public {
        _setLimits(address(token), 0, 1_000 * USDC, HOUR, 0);
        bytes32 ref2 = keccak256("hold-43");
        MinimalAccount.Execution[] memory executions = new MinimalAccount.Execution[](4);
        executions[0] = _execution(address(token), 0, _transferData(alice, 10 * USDC, REF));
        executions[1] = _execution(bob, 0.5 ether, abi.encodePacked(ref2));
        executions[2] = _execution(address(token), 0, _approveData(bob, 20 * USDC, ref2));
        executions[3] = _execution(address(token), 0, abi.encodeCall(MockERC20.mint, (bob, 1)));

        _expectSpend(address(token), alice, 10 * USDC, 10 * USDC, 10 * USDC, REF);
        _expectSpend(NATIVE, bob, 0.5 ether, 0, 0.5 ether, ref2);
        _expectSpend(address(token), bob, 20 * USDC, 30 * USDC, 30 * USDC, ref2);
        vm.recordLogs();
        _executeBatch(executions);

        vm.assertEq(_hookLogCount(vm.getRecordedLogs()), 3, "three metered outflows");
        vm.assertEq(token.balanceOf(alice), 10 * USDC, "alice paid");
        vm.assertEq(bob.balance, 0.5 ether, "bob paid");
        vm.assertEq(_state(address(token)).windowStart, block.timestamp, "window started");
    }

    function test_Batch_Empty() public {
        vm.recordLogs();
        _executeBatch(new MinimalAccount.Execution[](0));
        vm.assertEq(_hookLogCount(vm.getRecordedLogs()), 0, "no hook log");
    }

    function test_RevertWhen_BatchExceedsWindowLimit() public {
        _setLimits(address(token), 30 * USDC, 50 * USDC, HOUR, 0);
        MinimalAccount.Execution[] memory executions = new MinimalAccount.Execution[](2);
        executions[0] = _execution(address(token), 0, _transferData(alice, 30 * USDC, REF));
        executions[1] = _execution(address(token), 0, _transferData(bob, 30 * USDC, REF));

        vm.expectRevert(
            abi.encodeWithSelector(ISpendingHook.WindowLimitExceeded.selector, address(token), 30 * USDC, 20 * USDC)
        );
        _executeBatch(executions);
    }

    // =============================================================== execution types

    function test_RevertWhen_DelegatecallMode() public {
        vm.prank(owner);
        vm.expectRevert(ISpendingHook.UnsupportedExecution.selector);
        account.execute(MODE_DELEGATECALL, abi.encodePacked(address(token), ""));
    }

    function test_RevertWhen_StaticcallOrUnknownCallType() public {
        bytes1[3] memory callTypes = [bytes1(0xfe), bytes1(0x02), bytes1(0x80)];
        for (uint256 i = 0; i < callTypes.length; ++i) {
            vm.prank(owner);
            vm.expectRevert(ISpendingHook.UnsupportedExecution.selector);
            account.execute(bytes32(callTypes[i]), abi.encodePacked(alice, uint256(1), ""));
        }
    }

    function test_RevertWhen_UnknownExecType() public {
        vm.prank(owner);
        vm.expectRevert(ISpendingHook.UnsupportedExecution.selector);
        account.execute(bytes32(bytes2(0x0002)), abi.encodePacked(alice, uint256(1), ""));
    }

    function test_RevertWhen_SingleExecutionTooShort() public {
        bytes memory msgData =
            abi.encodeCall(MinimalAccount.execute, (MODE_SINGLE, abi.encodePacked(alice, bytes31(0))));
        vm.prank(address(account));
        vm.expectRevert(ISpendingHook.MalformedExecution.selector);
        hook.preCheck(owner, 0, msgData);
    }

    function test_RevertWhen_BatchOffsetOutOfRange() public {
        MinimalAccount.Execution[] memory executions = new MinimalAccount.Execution[](1);
        executions[0] = _execution(alice, 1, "");
        bytes memory batch = abi.encode(executions);
        assembly {
            mstore(add(batch, 0x20), 0x1000) // array offset past the end
        }
        bytes memory msgData = abi.encodeCall(MinimalAccount.execute, (MODE_BATCH, batch));
        vm.prank(address(account));
        vm.expectRevert(ISpendingHook.MalformedExecution.selector);
        hook.preCheck(owner, 0, msgData);
    }

    function test_RevertWhen_BatchCountTooLarge() public {
        MinimalAccount.Execution[] memory executions = new MinimalAccount.Execution[](1);
        executions[0] = _execution(alice, 1, "");
        bytes memory batch = abi.encode(executions);
        assembly {
            mstore(add(batch, 0x40), 0x100) // 256 elements claimed, one present
        }
        bytes memory msgData = abi.encodeCall(MinimalAccount.execute, (MODE_BATCH, batch));
        vm.prank(address(account));
        vm.expectRevert(ISpendingHook.MalformedExecution.selector);
        hook.preCheck(owner, 0, msgData);
    }

    function test_RevertWhen_BatchTargetHasDirtyBits() public {
        MinimalAccount.Execution[] memory executions = new MinimalAccount.Execution[](1);
        executions[0] = _execution(alice, 1, "");
        bytes memory batch = abi.encode(executions);
        // Layout: [array offset][length][element offset][target][value][callData offset][callData length]
        assembly {
            let target := add(batch, 0x80)
            mstore(target, or(mload(target), shl(200, 1)))
        }
        bytes memory msgData = abi.encodeCall(MinimalAccount.execute, (MODE_BATCH, batch));
        vm.prank(address(account));
        vm.expectRevert(ISpendingHook.MalformedExecution.selector);
        hook.preCheck(owner, 0, msgData);
    }

    // =============================================================== per-transaction limit

    function test_PerTx_AtLimit_Succeeds() public {
        _setLimits(address(token), 10 * USDC, 0, 0, 0);
        _expectSpend(address(token), alice, 10 * USDC, 0, 10 * USDC, REF);
        _executeSingle(address(token), 0, _transferData(alice, 10 * USDC, REF));
    }

    function test_RevertWhen_PerTxLimitExceeded() public {
        _setLimits(address(token), 10 * USDC, 0, 0, 0);
        vm.expectRevert(
            abi.encodeWithSelector(ISpendingHook.PerTxLimitExceeded.selector, address(token), 10 * USDC + 1, 10 * USDC)
        );
        _executeSingle(address(token), 0, _transferData(alice, 10 * USDC + 1, REF));
    }

    function test_RevertWhen_NativePerTxLimitExceeded() public {
        _setLimits(NATIVE, 1 ether, 0, 0, 0);
        vm.expectRevert(abi.encodeWithSelector(ISpendingHook.PerTxLimitExceeded.selector, NATIVE, 2 ether, 1 ether));
        _executeSingle(alice, 2 ether, "");
    }

    function test_RevertWhen_ApproveExceedsPerTxLimit() public {
        _setLimits(address(token), 10 * USDC, 0, 0, 0);
        vm.expectRevert(
            abi.encodeWithSelector(
                ISpendingHook.PerTxLimitExceeded.selector, address(token), type(uint256).max, 10 * USDC
            )
        );
        _executeSingle(address(token), 0, abi.encodeCall(MockERC20.approve, (bob, type(uint256).max)));
    }

    function test_RevertWhen_TransferFromAccountExceedsPerTxLimit() public {
        _executeSingle(address(token), 0, abi.encodeCall(MockERC20.approve, (address(account), 100 * USDC)));
        _setLimits(address(token), 10 * USDC, 0, 0, 0);
        vm.expectRevert(
            abi.encodeWithSelector(ISpendingHook.PerTxLimitExceeded.selector, address(token), 11 * USDC, 10 * USDC)
        );
        _executeSingle(address(token), 0, _transferFromData(address(account), bob, 11 * USDC, REF));
    }

    function test_Limits_ArePerToken() public {
        _setLimits(NATIVE, 1, 0, 0, 0);
        _expectSpend(address(token), alice, 1_000 * USDC, 0, 1_000 * USDC, REF);
        _executeSingle(address(token), 0, _transferData(alice, 1_000 * USDC, REF));
    }

    // =============================================================== window limit

    function test_RevertWhen_WindowLimitExceeded() public {
        _setLimits(address(token), 0, 100 * USDC, HOUR, 0);
        _executeSingle(address(token), 0, _transferData(alice, 60 * USDC, REF));
        vm.expectRevert(
            abi.encodeWithSelector(ISpendingHook.WindowLimitExceeded.selector, address(token), 50 * USDC, 40 * USDC)
        );
        _executeSingle(address(token), 0, _transferData(alice, 50 * USDC, REF));
    }

    function test_Window_RollsOverAfterWindowSeconds() public {
        vm.warp(1_700_000_000);
        _setLimits(address(token), 0, 100 * USDC, HOUR, 0);
        _expectSpend(address(token), alice, 60 * USDC, 60 * USDC, 60 * USDC, REF);
        _executeSingle(address(token), 0, _transferData(alice, 60 * USDC, REF));
        vm.assertEq(_state(address(token)).windowStart, 1_700_000_000, "window starts at first spend");

        // One second before the end the window is still the same one.
        vm.warp(1_700_000_000 + HOUR - 1);
        vm.expectRevert(
            abi.encodeWithSelector(ISpendingHook.WindowLimitExceeded.selector, address(token), 50 * USDC, 40 * USDC)
        );
        _executeSingle(address(token), 0, _transferData(alice, 50 * USDC, REF));

        // At windowStart + windowSeconds a new window starts with this spend.
        vm.warp(1_700_000_000 + HOUR);
        _expectSpend(address(token), alice, 50 * USDC, 50 * USDC, 110 * USDC, REF);
        _executeSingle(address(token), 0, _transferData(alice, 50 * USDC, REF));
        ISpendingHook.SpendState memory s = _state(address(token));
        vm.assertEq(s.windowStart, 1_700_000_000 + HOUR, "new window start");
        vm.assertEq(s.windowSpent, 50 * USDC, "new window spent");
    }

    function test_Window_StartsAtFirstSpendNotAtZero() public {
        // forge starts at timestamp 1; the first window must still last windowSeconds from the first spend.
        _setLimits(address(token), 0, 100 * USDC, HOUR, 0);
        vm.warp(HOUR + 5);
        _executeSingle(address(token), 0, _transferData(alice, 100 * USDC, REF));
        vm.assertEq(_state(address(token)).windowStart, HOUR + 5, "window start");
        vm.warp(2 * HOUR);
        vm.expectRevert(abi.encodeWithSelector(ISpendingHook.WindowLimitExceeded.selector, address(token), 1, 0));
        _executeSingle(address(token), 0, _transferData(alice, 1, REF));
    }

    function test_Window_RemovedLater_ReportsZeroWindowSpent() public {
        _setLimits(address(token), 0, 100 * USDC, HOUR, 0);
        _executeSingle(address(token), 0, _transferData(alice, 80 * USDC, REF));
        _setLimits(address(token), 0, 0, 0, 0);
        _expectSpend(address(token), alice, 5 * USDC, 0, 85 * USDC, REF);
        _executeSingle(address(token), 0, _transferData(alice, 5 * USDC, REF));
    }

    function test_RevertWhen_NativeWindowLimitExceeded() public {
        _setLimits(NATIVE, 0, 1 ether, HOUR, 0);
        _executeSingle(alice, 0.75 ether, "");
        vm.expectRevert(
            abi.encodeWithSelector(ISpendingHook.WindowLimitExceeded.selector, NATIVE, 0.5 ether, 0.25 ether)
        );
        _executeSingle(alice, 0.5 ether, "");
    }

    function test_Window_LoweredBelowSpent_LeavesNothing() public {
        _setLimits(address(token), 0, 100 * USDC, HOUR, 0);
        _executeSingle(address(token), 0, _transferData(alice, 80 * USDC, REF));
        _setLimits(address(token), 0, 50 * USDC, HOUR, 0);
        vm.expectRevert(abi.encodeWithSelector(ISpendingHook.WindowLimitExceeded.selector, address(token), 1, 0));
        _executeSingle(address(token), 0, _transferData(alice, 1, REF));
    }

    // =============================================================== cumulative limit

    function test_RevertWhen_CumulativeLimitExceededAcrossWindows() public {
        _setLimits(address(token), 0, 100 * USDC, HOUR, 250 * USDC);
        _executeSingle(address(token), 0, _transferData(alice, 100 * USDC, REF));
        vm.warp(block.timestamp + HOUR);
        _executeSingle(address(token), 0, _transferData(alice, 100 * USDC, REF));
        vm.warp(block.timestamp + HOUR);
        vm.expectRevert(
            abi.encodeWithSelector(ISpendingHook.CumulativeLimitExceeded.selector, address(token), 60 * USDC, 50 * USDC)
        );
        _executeSingle(address(token), 0, _transferData(alice, 60 * USDC, REF));

        _expectSpend(address(token), alice, 50 * USDC, 50 * USDC, 250 * USDC, REF);
        _executeSingle(address(token), 0, _transferData(alice, 50 * USDC, REF));
    }

    function test_RevertWhen_NativeCumulativeLimitExceeded() public {
        _setLimits(NATIVE, 0, 0, 0, 1 ether);
        _executeSingle(alice, 1 ether, "");
        vm.expectRevert(abi.encodeWithSelector(ISpendingHook.CumulativeLimitExceeded.selector, NATIVE, 1, 0));
        _executeSingle(alice, 1, "");
    }

    function test_RevertWhen_ApprovalsExceedCumulativeLimit() public {
        _setLimits(address(token), 0, 0, 0, 100 * USDC);
        _executeSingle(address(token), 0, _approveData(bob, 70 * USDC, REF));
        vm.expectRevert(
            abi.encodeWithSelector(ISpendingHook.CumulativeLimitExceeded.selector, address(token), 70 * USDC, 30 * USDC)
        );
        _executeSingle(address(token), 0, _approveData(bob, 70 * USDC, REF));
    }

    // =============================================================== fuzz

    function testFuzz_Transfer_RecordsExactAmountAndRef(uint256 amount, bytes32 ref, address to) public {
        amount = bound(amount, 0, token.balanceOf(address(account)));
        _expectSpend(address(token), to, amount, 0, amount, ref);
        _executeSingle(address(token), 0, _transferData(to, amount, ref));
        vm.assertEq(_state(address(token)).cumulativeSpent, amount, "cumulativeSpent");
    }

    function testFuzz_PerTx_RevertsExactlyAboveLimit(uint256 perTx, uint256 amount) public {
        perTx = bound(perTx, 1, 1_000 * USDC);
        amount = bound(amount, 0, 2_000 * USDC);
        _setLimits(address(token), perTx, 0, 0, 0);
        if (amount > perTx) {
            vm.expectRevert(
                abi.encodeWithSelector(ISpendingHook.PerTxLimitExceeded.selector, address(token), amount, perTx)
            );
        }
        _executeSingle(address(token), 0, _transferData(alice, amount, REF));
    }

    function testFuzz_Window_RemainingIsLimitMinusSpent(uint256 perWindow, uint256 first, uint256 second, uint256 gap)
        public
    {
        perWindow = bound(perWindow, 1, 1_000 * USDC);
        first = bound(first, 0, perWindow);
        second = bound(second, 0, 2 * perWindow);
        gap = bound(gap, 0, 2 * HOUR);
        _setLimits(address(token), 0, perWindow, HOUR, 0);
        _executeSingle(address(token), 0, _transferData(alice, first, REF));

        vm.warp(block.timestamp + gap);
        uint256 windowSpent = gap >= HOUR ? 0 : first;
        if (second > perWindow - windowSpent) {
            vm.expectRevert(
                abi.encodeWithSelector(
                    ISpendingHook.WindowLimitExceeded.selector, address(token), second, perWindow - windowSpent
                )
            );
        } else {
            _expectSpend(address(token), alice, second, windowSpent + second, first + second, REF);
        }
        _executeSingle(address(token), 0, _transferData(alice, second, REF));
    }

    function testFuzz_Cumulative_NeverExceeded(uint256 cumulative, uint256[4] memory amounts) public {
        cumulative = bound(cumulative, 1, 1_000 * USDC);
        _setLimits(address(token), 0, 0, 0, cumulative);
        uint256 spent;
        for (uint256 i = 0; i < amounts.length; ++i) {
            uint256 amount = bound(amounts[i], 0, cumulative);
            if (amount > cumulative - spent) {
                vm.expectRevert(
                    abi.encodeWithSelector(
                        ISpendingHook.CumulativeLimitExceeded.selector, address(token), amount, cumulative - spent
                    )
                );
            } else {
                spent += amount;
            }
            _executeSingle(address(token), 0, _transferData(alice, amount, REF));
        }
        vm.assertEq(_state(address(token)).cumulativeSpent, spent, "cumulativeSpent");
        vm.assertLe(spent, cumulative, "within limit");
    }

    function testFuzz_Batch_MetersEveryElement(uint8 count, uint256 seed) public {
        count = uint8(bound(count, 0, 8));
        MinimalAccount.Execution[] memory executions = new MinimalAccount.Execution[](count);
        uint256 total;
        for (uint256 i = 0; i < count; ++i) {
            uint256 amount = uint256(keccak256(abi.encode(seed, i))) % (10 * USDC);
            bytes32 ref = keccak256(abi.encode(seed, i, "ref"));
            executions[i] = _execution(address(token), 0, _transferData(alice, amount, ref));
            total += amount;
            _expectSpend(address(token), alice, amount, 0, total, ref);
        }
        _executeBatch(executions);
        vm.assertEq(_state(address(token)).cumulativeSpent, total, "cumulativeSpent");
        vm.assertEq(token.balanceOf(alice), total, "alice paid");
    }

    function testFuzz_Native_RefOnlyWhenCallDataIs32Bytes(uint256 value, bytes memory callData) public {
        value = bound(value, 1, 10 ether);
        // casting to 'bytes32' is safe because callData is exactly 32 bytes long when it is cast
        // forge-lint: disable-next-line(unsafe-typecast)
        bytes32 ref = callData.length == 32 ? bytes32(callData) : bytes32(0);
        _expectSpend(NATIVE, alice, value, 0, value, ref);
        _executeSingle(alice, value, callData);
    }

    function testFuzz_RevertWhen_CallTypeUnsupported(bytes1 callType) public {
        if (callType == 0x00 || callType == 0x01) callType = 0xff;
        vm.prank(owner);
        vm.expectRevert(ISpendingHook.UnsupportedExecution.selector);
        account.execute(bytes32(callType), abi.encodePacked(alice, uint256(1), ""));
    }

    function testFuzz_PreCheck_NeverReadsOutsideMsgData(bytes memory executionCalldata, bool batch) public {
        // Arbitrary bytes must either meter something consistent or revert MalformedExecution, never panic.
        bytes memory msgData =
            abi.encodeCall(MinimalAccount.execute, (batch ? MODE_BATCH : MODE_SINGLE, executionCalldata));
        vm.prank(address(account));
        try hook.preCheck(owner, 0, msgData) {}
        catch (bytes memory reason) {
            vm.assertEq(reason, abi.encodeWithSelector(ISpendingHook.MalformedExecution.selector), "malformed only");
        }
    }
}
