// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {IERC7579Hook} from "../../src/interfaces/IERC7579Hook.sol";

/// @title TryAccount
/// @notice A test-only ERC-7579-style account that, unlike `MinimalAccount`, supports the try exec
///         type as ERC-7579 describes it: in try mode a failed call does not revert the execution,
///         the account emits `TryExecuteUnsuccessful` and goes on. One owner, one executor module,
///         one hook run around `execute` and `executeFromExecutor`; single and batch calls.
/// @dev Shows what `SpendingHook` faces on any standard account that implements try mode.
contract TryAccount {
    /// @notice One call of a batch execution, as in ERC-7579.
    struct Execution {
        address target;
        uint256 value;
        bytes callData;
    }

    uint256 internal constant MODULE_TYPE_EXECUTOR = 2;
    uint256 internal constant MODULE_TYPE_HOOK = 4;

    /// @notice The only external caller allowed to `execute` and install modules.
    address public immutable owner;

    /// @notice The installed hook, or `address(0)`.
    address public hook;

    /// @notice The installed executor module, or `address(0)`.
    address public executor;

    /// @notice ERC-7579's event for a call that failed in try mode.
    /// @param batchExecutionindex The index of the failed call (0 for a single execution).
    /// @param result The call's revert data.
    event TryExecuteUnsuccessful(uint256 batchExecutionindex, bytes result);

    /// @notice The caller may not run this function.
    /// @param caller The caller.
    error Unauthorized(address caller);

    /// @notice The mode is not a single or batch call with the default or try exec type.
    /// @param mode The ERC-7579 execution mode.
    error UnsupportedExecutionMode(bytes32 mode);

    /// @notice Only executors (type 2) and hooks (type 4) can be installed.
    /// @param moduleTypeId The ERC-7579 module type id.
    error UnsupportedModule(uint256 moduleTypeId);

    /// @notice Creates the account.
    /// @param owner_ The only external caller allowed to execute.
    constructor(address owner_) {
        owner = owner_;
    }

    modifier onlyOwnerOrSelf() {
        if (msg.sender != owner && msg.sender != address(this)) revert Unauthorized(msg.sender);
        _;
    }

    modifier onlyExecutor() {
        if (msg.sender != executor || msg.sender == address(0)) revert Unauthorized(msg.sender);
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

    /// @notice Installs the executor (type 2) or the hook (type 4), replacing any previous one.
    /// @param moduleTypeId 2 or 4.
    /// @param module The module.
    /// @param initData Passed to a hook's `onInstall`.
    function installModule(uint256 moduleTypeId, address module, bytes calldata initData) external onlyOwnerOrSelf {
        if (moduleTypeId == MODULE_TYPE_EXECUTOR) {
            executor = module;
        } else if (moduleTypeId == MODULE_TYPE_HOOK) {
            hook = module;
            IERC7579Hook(module).onInstall(initData);
        } else {
            revert UnsupportedModule(moduleTypeId);
        }
    }

    /// @notice ERC-7579 `execute`: single (`abi.encodePacked(target, value, callData)`) or batch
    ///         (`abi.encode(Execution[])`), default or try exec type, between the hook's checks.
    /// @param mode First byte 0x00 single, 0x01 batch; second byte 0x00 default, 0x01 try.
    /// @param executionCalldata The encoded execution.
    function execute(bytes32 mode, bytes calldata executionCalldata) external payable onlyOwnerOrSelf withHook {
        _execute(mode, executionCalldata);
    }

    /// @notice ERC-7579 `executeFromExecutor`, for the installed executor; same modes as `execute`.
    /// @param mode As for `execute`.
    /// @param executionCalldata The encoded execution.
    function executeFromExecutor(bytes32 mode, bytes calldata executionCalldata)
        external
        payable
        onlyExecutor
        withHook
    {
        _execute(mode, executionCalldata);
    }

    function _execute(bytes32 mode, bytes calldata executionCalldata) internal {
        bytes1 callType = mode[0];
        bytes1 execType = mode[1];
        if (execType != 0x00 && execType != 0x01) revert UnsupportedExecutionMode(mode);
        bool tryMode = execType == 0x01;
        if (callType == 0x00) {
            address target = address(bytes20(executionCalldata[0:20]));
            uint256 value = uint256(bytes32(executionCalldata[20:52]));
            _call(0, target, value, executionCalldata[52:], tryMode);
        } else if (callType == 0x01) {
            Execution[] memory executions = abi.decode(executionCalldata, (Execution[]));
            for (uint256 i = 0; i < executions.length; ++i) {
                _call(i, executions[i].target, executions[i].value, executions[i].callData, tryMode);
            }
        } else {
            revert UnsupportedExecutionMode(mode);
        }
    }

    /// @dev A failed call reverts with its own reason in default mode; in try mode it is logged and skipped.
    function _call(uint256 index, address target, uint256 value, bytes memory callData, bool tryMode) internal {
        (bool success, bytes memory result) = target.call{value: value}(callData);
        if (success) return;
        if (tryMode) {
            emit TryExecuteUnsuccessful(index, result);
            return;
        }
        assembly ("memory-safe") {
            revert(add(result, 32), mload(result))
        }
    }
}
