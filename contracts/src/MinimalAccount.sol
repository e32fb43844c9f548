// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {IERC7579Hook} from "./interfaces/IERC7579Hook.sol";

/// @title MinimalAccount
/// @notice A minimal ERC-7579-style smart account for tests and local demos: one owner, single and
///         batch call executions, and one hook that runs around every execution.
/// @dev Not for production use: no ERC-4337 validation, no validators, executors or fallbacks.
contract MinimalAccount {
    /// @notice One call of a batch execution, as in ERC-7579.
    /// @param target The called address.
    /// @param value The native value sent.
    /// @param callData The calldata.
    struct Execution {
        address target;
        uint256 value;
        bytes callData;
    }

    /// @dev ERC-7579 module type id of a hook.
    uint256 internal constant MODULE_TYPE_HOOK = 4;

    /// @notice The only external caller allowed to execute and manage modules.
    address public immutable owner;

    /// @notice The installed hook, or `address(0)`.
    address public hook;

    /// @notice Emitted when a module is installed.
    /// @param moduleTypeId The ERC-7579 module type id.
    /// @param module The module.
    event ModuleInstalled(uint256 moduleTypeId, address module);

    /// @notice Emitted when a module is uninstalled.
    /// @param moduleTypeId The ERC-7579 module type id.
    /// @param module The module.
    event ModuleUninstalled(uint256 moduleTypeId, address module);

    /// @notice The caller is neither the owner nor the account itself.
    /// @param caller The caller.
    error Unauthorized(address caller);

    /// @notice The execution mode is not a default-exec single or batch call.
    /// @param mode The ERC-7579 execution mode.
    error UnsupportedExecutionMode(bytes32 mode);

    /// @notice Only hooks (type 4) can be installed, and only when none is.
    /// @param moduleTypeId The ERC-7579 module type id.
    /// @param module The module.
    error UnsupportedModule(uint256 moduleTypeId, address module);

    /// @notice The module is not the installed one.
    /// @param moduleTypeId The ERC-7579 module type id.
    /// @param module The module.
    error ModuleNotInstalled(uint256 moduleTypeId, address module);

    /// @notice Creates the account.
    /// @param owner_ The only external caller allowed to execute.
    constructor(address owner_) {
        owner = owner_;
    }

    modifier onlyOwnerOrSelf() {
        if (msg.sender != owner && msg.sender != address(this)) revert Unauthorized(msg.sender);
        _;
    }

    modifier withHook() {
        address hook_ = hook;
        bytes memory hookData;
        if (hook_ != address(0)) hookData = IERC7579Hook(hook_).preCheck(msg.sender, msg.value, msg.data);
        _;
        if (hook_ != address(0)) IERC7579Hook(hook_).postCheck(hookData);
    }

    /// @notice Receives native value.
    receive() external payable {}

    /// @notice Executes a single call (`abi.encodePacked(target, value, callData)`) or a batch
    ///         (`abi.encode(Execution[])`), after the hook's `preCheck` and before its `postCheck`.
    /// @dev The hook sees the mode first, so a mode it refuses reverts with the hook's error.
    /// @param mode ERC-7579 mode: first byte 0x00 single, 0x01 batch; second byte 0x00 (default exec).
    /// @param executionCalldata The encoded execution.
    function execute(bytes32 mode, bytes calldata executionCalldata) external payable onlyOwnerOrSelf withHook {
        bytes1 callType = mode[0];
        if (mode[1] != 0x00) revert UnsupportedExecutionMode(mode);
        if (callType == 0x00) {
            address target = address(bytes20(executionCalldata[0:20]));
            uint256 value = uint256(bytes32(executionCalldata[20:52]));
            _call(target, value, executionCalldata[52:]);
        } else if (callType == 0x01) {
            Execution[] memory executions = abi.decode(executionCalldata, (Execution[]));
            for (uint256 i = 0; i < executions.length; ++i) {
                _call(executions[i].target, executions[i].value, executions[i].callData);
            }
        } else {
            revert UnsupportedExecutionMode(mode);
        }
    }

    /// @notice Installs a hook (module type 4) and calls its `onInstall`.
    /// @param moduleTypeId Must be 4.
    /// @param module The hook.
    /// @param initData Passed to the hook's `onInstall`.
    function installModule(uint256 moduleTypeId, address module, bytes calldata initData)
        external
        payable
        onlyOwnerOrSelf
        withHook
    {
        if (moduleTypeId != MODULE_TYPE_HOOK || hook != address(0) || !IERC7579Hook(module).isModuleType(moduleTypeId))
        {
            revert UnsupportedModule(moduleTypeId, module);
        }
        hook = module;
        IERC7579Hook(module).onInstall(initData);
        emit ModuleInstalled(moduleTypeId, module);
    }

    /// @notice Uninstalls the hook and calls its `onUninstall`.
    /// @param moduleTypeId Must be 4.
    /// @param module The installed hook.
    /// @param deInitData Passed to the hook's `onUninstall`.
    function uninstallModule(uint256 moduleTypeId, address module, bytes calldata deInitData)
        external
        payable
        onlyOwnerOrSelf
    {
        if (moduleTypeId != MODULE_TYPE_HOOK || module == address(0) || hook != module) {
            revert ModuleNotInstalled(moduleTypeId, module);
        }
        hook = address(0);
        IERC7579Hook(module).onUninstall(deInitData);
        emit ModuleUninstalled(moduleTypeId, module);
    }

    /// @notice Tells whether a module is installed.
    /// @param moduleTypeId The ERC-7579 module type id.
    /// @param module The module.
    /// @return True when `module` is the installed hook and `moduleTypeId` is 4.
    function isModuleInstalled(uint256 moduleTypeId, address module, bytes calldata) external view returns (bool) {
        return moduleTypeId == MODULE_TYPE_HOOK && module != address(0) && hook == module;
    }

    function _call(address target, uint256 value, bytes memory callData) internal {
        (bool success, bytes memory result) = target.call{value: value}(callData);
        if (!success) {
            assembly ("memory-safe") {
                revert(add(result, 32), mload(result))
            }
        }
    }
}
