// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// @title ISpendingHook
/// @notice An ERC-7579 hook module (module type 4) that meters what a smart account spends and
///         enforces per-token limits: per transaction, per window and cumulative. A window is fixed,
///         not rolling: it starts at the first outflow after the previous one ended, so up to twice
///         `perWindow` can leave within a short time across the boundary of two windows.
/// @dev All state is keyed by the account that calls the hook (`msg.sender`), so an account can
///      only ever read-write its own limits and counters. `address(0)` stands for the native token.
interface ISpendingHook {
    /// @notice The limits and counters of one account for one token.
    /// @param perTx Largest single outflow; 0 = unlimited.
    /// @param perWindow Largest sum of outflows within one window; 0 = unlimited.
    /// @param windowSeconds Length of a window in seconds; 0 = no window (only allowed when `perWindow` is 0).
    /// @param cumulative Largest sum of all outflows ever metered; 0 = unlimited.
    /// @param windowStart Timestamp of the first outflow of the current window; 0 before the first one.
    /// @param windowSpent Sum of outflows in the window that started at `windowStart` (stored value: it is
    ///        not reset until the next outflow after the window has ended).
    /// @param cumulativeSpent Sum of all outflows ever metered (saturates at `type(uint256).max`).
    struct SpendState {
        uint256 perTx;
        uint256 perWindow;
        uint32 windowSeconds;
        uint256 cumulative;
        uint64 windowStart;
        uint256 windowSpent;
        uint256 cumulativeSpent;
    }

    /// @notice One limit setting, as taken by `onInstall`.
    /// @param token The token the limits apply to; `address(0)` = native.
    /// @param perTx Largest single outflow; 0 = unlimited.
    /// @param perWindow Largest sum of outflows within one window; 0 = unlimited.
    /// @param windowSeconds Length of a window in seconds; must be non-zero when `perWindow` is.
    /// @param cumulative Largest sum of all outflows; 0 = unlimited.
    struct LimitConfig {
        address token;
        uint256 perTx;
        uint256 perWindow;
        uint32 windowSeconds;
        uint256 cumulative;
    }

    /// @notice Emitted for every metered outflow, limited or not.
    /// @param account The smart account that spent.
    /// @param token The token spent; `address(0)` = native value.
    /// @param sender The `msgSender` the account passed to `preCheck` (who called the account).
    /// @param to The recipient: the call target for native value, `to` for `transfer` and
    ///        `transferFrom`, the spender for `approve`.
    /// @param amount The amount of this outflow.
    /// @param windowSpent The account's spent amount in the current window, this outflow included;
    ///        0 when the token has no window (`windowSeconds` is 0).
    /// @param cumulativeSpent The account's cumulative spent amount, this outflow included.
    /// @param ref The 32 bytes that follow the call's standard ABI arguments (zero when absent);
    ///        for native value, the call data itself when it is exactly 32 bytes long.
    event SpendRecorded(
        address indexed account,
        address indexed token,
        address indexed sender,
        address to,
        uint256 amount,
        uint256 windowSpent,
        uint256 cumulativeSpent,
        bytes32 ref
    );

    /// @notice Emitted when an account sets its limits for a token.
    /// @param account The account whose limits changed.
    /// @param token The token the limits apply to; `address(0)` = native.
    /// @param perTx Largest single outflow; 0 = unlimited.
    /// @param perWindow Largest sum of outflows within one window; 0 = unlimited.
    /// @param windowSeconds Length of a window in seconds.
    /// @param cumulative Largest sum of all outflows; 0 = unlimited.
    event LimitsSet(
        address indexed account,
        address indexed token,
        uint256 perTx,
        uint256 perWindow,
        uint32 windowSeconds,
        uint256 cumulative
    );

    /// @notice An outflow is larger than the per-transaction limit.
    /// @param token The token spent; `address(0)` = native.
    /// @param amount The attempted amount.
    /// @param limit The per-transaction limit.
    error PerTxLimitExceeded(address token, uint256 amount, uint256 limit);

    /// @notice An outflow is larger than what remains of the current window's limit.
    /// @param token The token spent; `address(0)` = native.
    /// @param amount The attempted amount.
    /// @param remaining What could still be spent in the current window.
    error WindowLimitExceeded(address token, uint256 amount, uint256 remaining);

    /// @notice An outflow is larger than what remains of the cumulative limit.
    /// @param token The token spent; `address(0)` = native.
    /// @param amount The attempted amount.
    /// @param remaining What could still be spent in total.
    error CumulativeLimitExceeded(address token, uint256 amount, uint256 remaining);

    /// @notice The execution's call type (delegatecall, static call, anything but single or batch
    ///         call), exec type (anything but default; try has `TryExecutionRefused`) or mode
    ///         selector (anything but zero) cannot be metered, so it is refused.
    error UnsupportedExecution();

    /// @notice The execution is in try mode (exec type `0x01`), which is refused whatever it calls.
    ///         In try mode the account swallows a failed call instead of reverting, so an outflow
    ///         that `preCheck` metered and logged could never happen, and `postCheck` cannot tell.
    ///         Use the default exec type (`0x00`): a failed call then reverts the whole execution,
    ///         counters and logs included.
    error TryExecutionRefused();

    /// @notice An execution would change the hook itself: a call to the hook other than `setLimits`,
    ///         `setLimits` from an executor module (`executeFromExecutor`), any call of an executor
    ///         module's execution to its own account, or the account's own `installModule` of a hook
    ///         or `uninstallModule` of this hook made from inside an execution.
    /// @param target The call's target: the hook or the account.
    /// @param selector The refused function.
    error ProtectedCall(address target, bytes4 selector);

    /// @notice The execution calldata is not well-formed ABI for its call type.
    error MalformedExecution();

    /// @notice A per-window limit was given without a window length.
    /// @param token The token whose limits were being set.
    error InvalidWindow(address token);

    /// @notice The hook is not installed on the calling account.
    /// @param account The calling account.
    error NotInitialized(address account);

    /// @notice The hook is already installed on the calling account.
    /// @param account The calling account.
    error AlreadyInitialized(address account);

    /// @notice Called by the account when it installs the hook.
    /// @param data Empty, or `abi.encode(LimitConfig[])` of initial limits.
    function onInstall(bytes calldata data) external;

    /// @notice Called by the account when it uninstalls the hook. Limits and counters are kept, so an
    ///         uninstall and reinstall cannot reset what was spent.
    /// @param data Ignored.
    function onUninstall(bytes calldata data) external;

    /// @notice Tells whether this module is of the given ERC-7579 module type.
    /// @param moduleTypeId The module type id.
    /// @return True for 4 (hook) only.
    function isModuleType(uint256 moduleTypeId) external pure returns (bool);

    /// @notice Tells whether the hook is installed on an account.
    /// @param account The smart account.
    /// @return True between `onInstall` and `onUninstall`.
    function isInitialized(address account) external view returns (bool);

    /// @notice Sets the caller's limits for one token; 0 = unlimited. Counters are kept.
    /// @param token The token; `address(0)` = native.
    /// @param perTx Largest single outflow.
    /// @param perWindow Largest sum of outflows within one window.
    /// @param windowSeconds Length of a window in seconds; must be non-zero when `perWindow` is.
    /// @param cumulative Largest sum of all outflows.
    function setLimits(address token, uint256 perTx, uint256 perWindow, uint32 windowSeconds, uint256 cumulative)
        external;

    /// @notice Returns an account's limits and counters for a token.
    /// @param account The smart account.
    /// @param token The token; `address(0)` = native.
    /// @return state The limits and counters, in the order of `SpendState`.
    function spendState(address account, address token) external view returns (SpendState memory state);

    /// @notice Called by the account before an execution: meters every outflow it can see, reverts
    ///         when one goes over a limit, and emits `SpendRecorded` for each. Executions in try
    ///         mode are refused (`TryExecutionRefused`).
    /// @param msgSender The caller of the account.
    /// @param msgValue The value sent to the account with the call.
    /// @param msgData The account's full calldata.
    /// @return hookData Empty; passed back to `postCheck`.
    function preCheck(address msgSender, uint256 msgValue, bytes calldata msgData)
        external
        returns (bytes memory hookData);

    /// @notice Called by the account after an execution. Does nothing: all checks happen before (and
    ///         a try-mode execution, whose failed calls it could not tell apart, never gets here).
    /// @param hookData What `preCheck` returned.
    function postCheck(bytes calldata hookData) external;
}
