// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {HookTestBase} from "./utils/HookTestBase.sol";
import {TryAccount} from "./utils/TryAccount.sol";
import {Vm} from "./utils/Vm.sol";
import {ISpendingHook} from "../src/interfaces/ISpendingHook.sol";
import {MinimalAccount} from "../src/MinimalAccount.sol";
import {MockERC20} from "../src/MockERC20.sol";

/// @dev A hook that meters nothing: what a module swap would leave the account with.
contract PassThroughHook {
    function onInstall(bytes calldata) external {}

    function onUninstall(bytes calldata) external {}

    function isModuleType(uint256 moduleTypeId) external pure returns (bool) {
        return moduleTypeId == 4;
    }

    function preCheck(address, uint256, bytes calldata) external pure returns (bytes memory) {
        return "";
    }

    function postCheck(bytes calldata) external {}
}

/// @notice Calls of an execution to its own account, outflows whose recipient is the account, and
///         execution modes with a mode selector.
contract SpendingHookSelfCallsTest is HookTestBase {
    bytes32 internal constant REF = bytes32(uint256(0x51));
    uint256 internal constant BALANCE = 10 * USDC;

    TryAccount internal tryAccount;
    address internal executor;
    PassThroughHook internal passThrough;

    function setUp() public override {
        super.setUp();
        executor = makeAddr("executor");
        passThrough = new PassThroughHook();
        tryAccount = new TryAccount(owner);
        vm.label(address(tryAccount), "tryAccount");
        vm.startPrank(owner);
        tryAccount.installModule(4, address(hook), "");
        tryAccount.installModule(2, executor, "");
        tryAccount.execute(
            MODE_SINGLE,
            abi.encodePacked(
                address(hook), uint256(0), abi.encodeCall(hook.setLimits, (address(token), USDC, 0, 0, USDC))
            )
        );
        vm.stopPrank();
        token.mint(address(tryAccount), BALANCE);
        vm.deal(address(tryAccount), 1 ether);
    }

    // ======================================================= an executor may not call its account

    function test_RevertWhen_Executor_InstallsAHookThroughItsAccount() public {
        bytes memory install = abi.encodeCall(TryAccount.installModule, (4, address(passThrough), ""));
        vm.prank(executor);
        vm.expectRevert(
            abi.encodeWithSelector(
                ISpendingHook.ProtectedCall.selector, address(tryAccount), TryAccount.installModule.selector
            )
        );
        tryAccount.executeFromExecutor(MODE_SINGLE, abi.encodePacked(address(tryAccount), uint256(0), install));
        vm.assertEq(tryAccount.hook(), address(hook), "hook kept");

        // Still metered: the executor cannot pay past the per-tx limit.
        vm.prank(executor);
        vm.expectRevert(
            abi.encodeWithSelector(ISpendingHook.PerTxLimitExceeded.selector, address(token), BALANCE, USDC)
        );
        tryAccount.executeFromExecutor(
            MODE_SINGLE, abi.encodePacked(address(token), uint256(0), _transferData(alice, BALANCE, REF))
        );
    }

    function test_RevertWhen_Executor_InstallsAnotherModuleThroughItsAccount() public {
        // An executor of its own choosing (or, on other accounts, a validator) would act as the account.
        bytes memory install = abi.encodeCall(TryAccount.installModule, (2, makeAddr("other"), ""));
        vm.prank(executor);
        vm.expectRevert(
            abi.encodeWithSelector(
                ISpendingHook.ProtectedCall.selector, address(tryAccount), TryAccount.installModule.selector
            )
        );
        tryAccount.executeFromExecutor(MODE_SINGLE, abi.encodePacked(address(tryAccount), uint256(0), install));
        vm.assertEq(tryAccount.executor(), executor, "executor kept");
    }

    function test_RevertWhen_Executor_CallsItsAccountInABatch() public {
        TryAccount.Execution[] memory executions = new TryAccount.Execution[](2);
        executions[0] = TryAccount.Execution(address(token), 0, _transferData(alice, USDC / 2, REF));
        executions[1] = TryAccount.Execution(
            address(tryAccount), 0, abi.encodeCall(TryAccount.installModule, (4, address(passThrough), ""))
        );
        vm.prank(executor);
        vm.expectRevert(
            abi.encodeWithSelector(
                ISpendingHook.ProtectedCall.selector, address(tryAccount), TryAccount.installModule.selector
            )
        );
        tryAccount.executeFromExecutor(MODE_BATCH, abi.encode(executions));
        vm.assertEq(token.balanceOf(alice), 0, "the whole batch reverted");
    }

    function test_RevertWhen_Executor_CallsItsAccountWithoutSelector() public {
        // Value or short data reaches the account's receive or fallback function, which may route to
        // a fallback handler module: refused as well.
        vm.prank(executor);
        vm.expectRevert(abi.encodeWithSelector(ISpendingHook.ProtectedCall.selector, address(tryAccount), bytes4(0)));
        tryAccount.executeFromExecutor(MODE_SINGLE, abi.encodePacked(address(tryAccount), uint256(1), ""));
    }

    // ================================================== the account's own execution and hooks

    function test_RevertWhen_Execute_InstallsAHook() public {
        // A batch that puts another hook in place, then spends in a nested execute the new hook
        // does not meter.
        TryAccount.Execution[] memory executions = new TryAccount.Execution[](2);
        executions[0] = TryAccount.Execution(
            address(tryAccount), 0, abi.encodeCall(TryAccount.installModule, (4, address(passThrough), ""))
        );
        executions[1] = TryAccount.Execution(
            address(tryAccount),
            0,
            abi.encodeCall(
                TryAccount.execute,
                (MODE_SINGLE, abi.encodePacked(address(token), uint256(0), _transferData(alice, BALANCE, REF)))
            )
        );
        vm.recordLogs();
        vm.prank(owner);
        vm.expectRevert(
            abi.encodeWithSelector(
                ISpendingHook.ProtectedCall.selector, address(tryAccount), TryAccount.installModule.selector
            )
        );
        tryAccount.execute(MODE_BATCH, abi.encode(executions));
        vm.assertEq(tryAccount.hook(), address(hook), "hook kept");
        vm.assertEq(token.balanceOf(alice), 0, "nothing paid");
    }

    function test_Execute_InstallsAnotherModuleType() public {
        // The account's own execution may manage modules other than hooks.
        address other = makeAddr("other");
        vm.prank(owner);
        tryAccount.execute(
            MODE_SINGLE,
            abi.encodePacked(address(tryAccount), uint256(0), abi.encodeCall(TryAccount.installModule, (2, other, "")))
        );
        vm.assertEq(tryAccount.executor(), other, "executor replaced by the account");
    }

    function test_InstallHook_OutsideAnExecution() public {
        // The owner swaps hooks in a call of its own, which the hook does not run around.
        vm.prank(owner);
        tryAccount.installModule(4, address(passThrough), "");
        vm.assertEq(tryAccount.hook(), address(passThrough), "hook replaced");
    }

    // ======================================================= outflows to the account itself

    function test_TransferToSelf_NotMetered() public {
        vm.recordLogs();
        _executeSingle(address(token), 0, _transferData(address(account), 500 * USDC, REF));
        vm.assertEq(_hookLogCount(vm.getRecordedLogs()), 0, "no SpendRecorded");
        vm.assertEq(_state(address(token)).cumulativeSpent, 0, "nothing metered");
    }

    function test_TransferFromSelfToSelf_NotMetered() public {
        vm.recordLogs();
        _executeSingle(address(token), 0, _approveData(address(account), type(uint256).max, REF));
        _executeSingle(address(token), 0, _transferFromData(address(account), address(account), 7 * USDC, REF));
        vm.assertEq(_hookLogCount(vm.getRecordedLogs()), 0, "no SpendRecorded");
        vm.assertEq(_state(address(token)).cumulativeSpent, 0, "a self-approval does not saturate the counter");
    }

    function test_NativeToSelf_NotMetered() public {
        uint256 before = address(account).balance;
        vm.recordLogs();
        _executeSingle(address(account), 3 ether, "");
        vm.assertEq(_hookLogCount(vm.getRecordedLogs()), 0, "no SpendRecorded");
        vm.assertEq(_state(NATIVE).cumulativeSpent, 0, "nothing metered");
        vm.assertEq(address(account).balance, before, "nothing left the account");
    }

    function test_TransferToSelf_LeavesTheLimitForPayments() public {
        _setLimits(address(token), 0, 0, 0, 100 * USDC);
        _executeSingle(address(token), 0, _transferData(address(account), 100 * USDC, REF));

        _expectSpend(address(token), bob, 100 * USDC, 0, 100 * USDC, REF);
        _executeSingle(address(token), 0, _transferData(bob, 100 * USDC, REF));
        vm.assertEq(token.balanceOf(bob), 100 * USDC, "bob paid the whole limit");
    }

    function test_BatchWithSelfTransfer_MetersTheRest() public {
        MinimalAccount.Execution[] memory executions = new MinimalAccount.Execution[](2);
        executions[0] = _execution(address(token), 0, _transferData(address(account), 50 * USDC, REF));
        executions[1] = _execution(address(token), 0, _transferData(bob, 20 * USDC, REF));
        _expectSpend(address(token), bob, 20 * USDC, 0, 20 * USDC, REF);
        _executeBatch(executions);
        vm.assertEq(_state(address(token)).cumulativeSpent, 20 * USDC, "only bob's payment");
    }

    // ============================================================ mode selectors

    function test_RevertWhen_ModeSelectorIsSet() public {
        // ERC-7821's batch of batches (selector 0x78210002) lays the data out differently; a batch
        // read as plain `Execution[]` would be misread.
        bytes32 mode = bytes32(uint256(0x01000000000078210002) << (22 * 8));
        MinimalAccount.Execution[] memory executions = new MinimalAccount.Execution[](1);
        executions[0] = _execution(address(token), 0, _transferData(bob, USDC, REF));
        vm.prank(owner);
        vm.expectRevert(ISpendingHook.UnsupportedExecution.selector);
        account.execute(mode, abi.encode(executions));
        vm.assertEq(token.balanceOf(bob), 0, "nothing paid");
    }

    function test_ModePayloadIgnored() public {
        // The 22-byte mode payload carries no layout: a batch with one is metered as usual.
        bytes32 mode = bytes32(uint256(0x01) << 248) | bytes32(uint256(0xabcdef));
        MinimalAccount.Execution[] memory executions = new MinimalAccount.Execution[](1);
        executions[0] = _execution(address(token), 0, _transferData(bob, USDC, REF));
        _expectSpend(address(token), bob, USDC, 0, USDC, REF);
        vm.prank(owner);
        account.execute(mode, abi.encode(executions));
    }
}
