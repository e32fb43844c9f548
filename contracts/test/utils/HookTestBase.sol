// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {Test} from "./Test.sol";
import {Vm} from "./Vm.sol";
import {SpendingHook} from "../../src/SpendingHook.sol";
import {ISpendingHook} from "../../src/interfaces/ISpendingHook.sol";
import {MinimalAccount} from "../../src/MinimalAccount.sol";
import {MockERC20} from "../../src/MockERC20.sol";

/// @notice Shared fixture: an account owned by `owner` with the hook installed, holding tokens and ether.
abstract contract HookTestBase is Test {
    bytes32 internal constant MODE_SINGLE = bytes32(0);
    bytes32 internal constant MODE_BATCH = bytes32(bytes1(0x01));
    bytes32 internal constant MODE_DELEGATECALL = bytes32(bytes1(0xff));

    address internal constant NATIVE = address(0);
    uint256 internal constant USDC = 1e6;
    uint32 internal constant HOUR = 3600;

    SpendingHook internal hook;
    MinimalAccount internal account;
    MockERC20 internal token;
    address internal owner;
    address internal alice;
    address internal bob;

    function setUp() public virtual {
        owner = makeAddr("owner");
        alice = makeAddr("alice");
        bob = makeAddr("bob");
        hook = new SpendingHook();
        token = new MockERC20("Mock USD", "mUSD");
        account = new MinimalAccount(owner);
        vm.label(address(hook), "hook");
        vm.label(address(token), "token");
        vm.label(address(account), "account");

        vm.prank(owner);
        account.installModule(4, address(hook), "");

        token.mint(address(account), 1_000_000 * USDC);
        vm.deal(address(account), 1_000 ether);
    }

    // ------------------------------------------------------------------ executions

    function _execution(address target, uint256 value, bytes memory callData)
        internal
        pure
        returns (MinimalAccount.Execution memory)
    {
        return MinimalAccount.Execution({target: target, value: value, callData: callData});
    }

    function _executeSingle(address target, uint256 value, bytes memory callData) internal {
        vm.prank(owner);
        account.execute(MODE_SINGLE, abi.encodePacked(target, value, callData));
    }

    function _executeBatch(MinimalAccount.Execution[] memory executions) internal {
        vm.prank(owner);
        account.execute(MODE_BATCH, abi.encode(executions));
    }

    function _setLimits(address asset, uint256 perTx, uint256 perWindow, uint32 windowSeconds, uint256 cumulative)
        internal
    {
        _executeSingle(
            address(hook), 0, abi.encodeCall(hook.setLimits, (asset, perTx, perWindow, windowSeconds, cumulative))
        );
    }

    // ------------------------------------------------------------------ ERC-20 call data with a ref

    function _transferData(address to, uint256 amount, bytes32 ref) internal pure returns (bytes memory) {
        return abi.encodePacked(abi.encodeCall(MockERC20.transfer, (to, amount)), ref);
    }

    function _transferFromData(address from, address to, uint256 amount, bytes32 ref)
        internal
        pure
        returns (bytes memory)
    {
        return abi.encodePacked(abi.encodeCall(MockERC20.transferFrom, (from, to, amount)), ref);
    }

    function _approveData(address spender, uint256 amount, bytes32 ref) internal pure returns (bytes memory) {
        return abi.encodePacked(abi.encodeCall(MockERC20.approve, (spender, amount)), ref);
    }

    // ------------------------------------------------------------------ expectations

    function _expectSpend(
        address asset,
        address to,
        uint256 amount,
        uint256 windowSpent,
        uint256 cumulativeSpent,
        bytes32 ref
    ) internal {
        vm.expectEmit(true, true, true, true, address(hook));
        emit ISpendingHook.SpendRecorded(address(account), asset, owner, to, amount, windowSpent, cumulativeSpent, ref);
    }

    function _state(address asset) internal view returns (ISpendingHook.SpendState memory) {
        return hook.spendState(address(account), asset);
    }

    /// @dev Number of logs in `logs` emitted by the hook.
    function _hookLogCount(Vm.Log[] memory logs) internal view returns (uint256 count) {
        for (uint256 i = 0; i < logs.length; ++i) {
            if (logs[i].emitter == address(hook)) ++count;
        }
    }
}
