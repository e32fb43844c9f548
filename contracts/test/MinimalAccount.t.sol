// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {HookTestBase} from "./utils/HookTestBase.sol";
import {ISpendingHook} from "../src/interfaces/ISpendingHook.sol";
import {MinimalAccount} from "../src/MinimalAccount.sol";
import {MockERC20} from "../src/MockERC20.sol";
import {SpendingHook} from "../src/SpendingHook.sol";

contract MinimalAccountTest is HookTestBase {
    function test_InstallModule_EmitsAndCallsOnInstall() public {
        MinimalAccount fresh = new MinimalAccount(owner);
        vm.expectEmit(true, true, true, true, address(fresh));
        emit MinimalAccount.ModuleInstalled(4, address(hook));
        vm.prank(owner);
        fresh.installModule(4, address(hook), "");
        vm.assertTrue(hook.isInitialized(address(fresh)), "initialized");
        vm.assertTrue(fresh.isModuleInstalled(4, address(hook), ""), "installed");
    }

    function test_UninstallModule_EmitsAndCallsOnUninstall() public {
        vm.expectEmit(true, true, true, true, address(account));
        emit MinimalAccount.ModuleUninstalled(4, address(hook));
        vm.prank(owner);
        account.uninstallModule(4, address(hook), "");
        vm.assertFalse(hook.isInitialized(address(account)), "not initialized");
        vm.assertEq(account.hook(), address(0), "no hook");
    }

    function test_Execute_WithoutHook_IsNotMetered() public {
        vm.prank(owner);
        account.uninstallModule(4, address(hook), "");
        vm.recordLogs();
        _executeSingle(address(token), 0, abi.encodeCall(MockERC20.transfer, (alice, 5 * USDC)));
        vm.assertEq(_hookLogCount(vm.getRecordedLogs()), 0, "no hook log");
        vm.assertEq(token.balanceOf(alice), 5 * USDC, "alice paid");
    }

    function test_Receive_AcceptsEther() public {
        vm.deal(alice, 1 ether);
        vm.prank(alice);
        (bool ok,) = address(account).call{value: 1 ether}("");
        vm.assertTrue(ok, "received");
    }

    function test_Execute_BySelf() public {
        bytes memory inner =
            abi.encodeCall(MinimalAccount.execute, (MODE_SINGLE, abi.encodePacked(alice, uint256(1), "")));
        _executeSingle(address(account), 0, inner);
        vm.assertEq(alice.balance, 1, "alice paid");
    }

    function test_RevertWhen_StrangerInstallsModule() public {
        vm.prank(alice);
        vm.expectRevert(abi.encodeWithSelector(MinimalAccount.Unauthorized.selector, alice));
        account.installModule(4, address(hook), "");
    }

    function test_RevertWhen_StrangerUninstallsModule() public {
        vm.prank(alice);
        vm.expectRevert(abi.encodeWithSelector(MinimalAccount.Unauthorized.selector, alice));
        account.uninstallModule(4, address(hook), "");
    }

    function test_RevertWhen_InstallingSecondHook() public {
        SpendingHook second = new SpendingHook();
        vm.prank(owner);
        vm.expectRevert(abi.encodeWithSelector(MinimalAccount.UnsupportedModule.selector, 4, address(second)));
        account.installModule(4, address(second), "");
    }

    function test_RevertWhen_InstallingNonHookType() public {
        MinimalAccount fresh = new MinimalAccount(owner);
        vm.prank(owner);
        vm.expectRevert(abi.encodeWithSelector(MinimalAccount.UnsupportedModule.selector, 2, address(hook)));
        fresh.installModule(2, address(hook), "");
    }

    function test_RevertWhen_UninstallingOtherModule() public {
        vm.prank(owner);
        vm.expectRevert(abi.encodeWithSelector(MinimalAccount.ModuleNotInstalled.selector, 4, alice));
        account.uninstallModule(4, alice, "");
    }

    function test_RevertWhen_DelegatecallModeWithoutHook() public {
        vm.prank(owner);
        account.uninstallModule(4, address(hook), "");
        vm.prank(owner);
        vm.expectRevert(abi.encodeWithSelector(MinimalAccount.UnsupportedExecutionMode.selector, MODE_DELEGATECALL));
        account.execute(MODE_DELEGATECALL, abi.encodePacked(address(token), ""));
    }

    function test_RevertWhen_DelegatecallMode_HookRefusesFirst() public {
        vm.prank(owner);
        vm.expectRevert(ISpendingHook.UnsupportedExecution.selector);
        account.execute(MODE_DELEGATECALL, abi.encodePacked(address(token), ""));
    }

    function test_RevertWhen_TryModeOnAccount() public {
        bytes32 mode = bytes32(bytes2(0x0001));
        vm.prank(owner);
        account.uninstallModule(4, address(hook), "");
        vm.prank(owner);
        vm.expectRevert(abi.encodeWithSelector(MinimalAccount.UnsupportedExecutionMode.selector, mode));
        account.execute(mode, abi.encodePacked(alice, uint256(1), ""));
    }

    function test_RevertWhen_TryMode_HookRefusesFirst() public {
        vm.prank(owner);
        vm.expectRevert(ISpendingHook.TryExecutionRefused.selector);
        account.execute(bytes32(bytes2(0x0001)), abi.encodePacked(alice, uint256(1), ""));
    }

    function test_RevertWhen_CallFails_BubblesReason() public {
        vm.prank(owner);
        vm.expectRevert(
            abi.encodeWithSelector(
                MockERC20.InsufficientBalance.selector, address(account), 1_000_000 * USDC, 1_000_000 * USDC + 1
            )
        );
        account.execute(
            MODE_SINGLE,
            abi.encodePacked(
                address(token), uint256(0), abi.encodeCall(MockERC20.transfer, (alice, 1_000_000 * USDC + 1))
            )
        );
    }

    function test_RevertWhen_TransferFromWithoutAllowance() public {
        token.mint(alice, 10);
        vm.prank(owner);
        vm.expectRevert(abi.encodeWithSelector(MockERC20.InsufficientAllowance.selector, address(account), 0, 10));
        account.execute(
            MODE_SINGLE,
            abi.encodePacked(address(token), uint256(0), abi.encodeCall(MockERC20.transferFrom, (alice, bob, 10)))
        );
    }

    function test_MockERC20_Metadata() public view {
        vm.assertEq(token.decimals(), 6, "decimals");
        vm.assertEq(token.totalSupply(), 1_000_000 * USDC, "supply");
    }
}
