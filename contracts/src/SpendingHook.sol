// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {ISpendingHook} from "./interfaces/ISpendingHook.sol";

/// @title SpendingHook
/// @notice ERC-7579 hook module (type 4) that enforces per-token spending limits on the account that
///         installs it and logs every metered outflow as `SpendRecorded`.
/// @dev What is metered, from the account's `execute` and `executeFromExecutor` calldata:
///      - native value of each call (token `address(0)`, recipient = call target), when non-zero;
///      - `transfer(to, amount)` to any target (token = target);
///      - `transferFrom(from, to, amount)` when `from` is the account (token = target);
///      - `approve(spender, amount)` (token = target, recipient = spender).
///      An outflow whose recipient is the account itself moves nothing out and is not metered.
///      `ref` is the word right after the standard arguments: `callData[68:100]` for `transfer` and
///      `approve`, `callData[100:132]` for `transferFrom`, zero when the call data is shorter. For native
///      value, `ref` is the call data itself when it is exactly 32 bytes long, otherwise zero.
///      Arguments are read the way the EVM reads calldata: missing bytes are zero.
///      Anything else (other account functions, unknown call targets) is not metered; see
///      contracts/README.md for what a hook cannot see.
///      Only the default exec type (`0x00`) runs: in the default type a failed call reverts the
///      whole execution, this hook's counters and `SpendRecorded` logs with it, so every outflow
///      that is metered and logged did happen. Any `execute` or `executeFromExecutor` in try mode
///      (exec type `0x01`) is refused with `TryExecutionRefused`, whatever it calls, because there
///      the account swallows a failed call and keeps the hook's counters and logs; `postCheck`
///      cannot tell which calls failed. Other exec types are refused with `UnsupportedExecution`.
contract SpendingHook is ISpendingHook {
    /// @dev ERC-7579 module type id of a hook.
    uint256 internal constant MODULE_TYPE_HOOK = 4;

    /// @dev ERC-7579 `execute(bytes32,bytes)` and `executeFromExecutor(bytes32,bytes)`.
    bytes4 internal constant EXECUTE_SELECTOR = 0xe9ae5c53;
    bytes4 internal constant EXECUTE_FROM_EXECUTOR_SELECTOR = 0xd691c964;

    /// @dev ERC-7579 call types (first byte of the mode) and exec types (second byte).
    bytes1 internal constant CALLTYPE_SINGLE = 0x00;
    bytes1 internal constant CALLTYPE_BATCH = 0x01;
    bytes1 internal constant EXECTYPE_DEFAULT = 0x00;
    bytes1 internal constant EXECTYPE_TRY = 0x01;

    /// @dev ERC-20 selectors.
    bytes4 internal constant TRANSFER_SELECTOR = 0xa9059cbb; // transfer(address,uint256)
    bytes4 internal constant TRANSFER_FROM_SELECTOR = 0x23b872dd; // transferFrom(address,address,uint256)
    bytes4 internal constant APPROVE_SELECTOR = 0x095ea7b3; // approve(address,uint256)

    /// @dev ERC-7579 `installModule(uint256,address,bytes)` and `uninstallModule(uint256,address,bytes)`.
    bytes4 internal constant INSTALL_MODULE_SELECTOR = 0x9517e29f;
    bytes4 internal constant UNINSTALL_MODULE_SELECTOR = 0xa71763a8;

    /// @dev Limits and counters of one account for one token. `windowStart` and `windowSeconds` share a slot.
    struct TokenState {
        uint256 perTx;
        uint256 perWindow;
        uint256 cumulative;
        uint256 windowSpent;
        uint256 cumulativeSpent;
        uint64 windowStart;
        uint32 windowSeconds;
    }

    /// @dev token => account => state. The account is the innermost key, so every slot is associated
    ///      with the account in the ERC-4337 / ERC-7562 sense.
    mapping(address token => mapping(address account => TokenState)) internal _states;

    /// @dev account => installed.
    mapping(address account => bool) internal _initialized;

    // ---------------------------------------------------------------------------------------------
    // Module lifecycle
    // ---------------------------------------------------------------------------------------------

    /// @inheritdoc ISpendingHook
    function onInstall(bytes calldata data) external {
        if (_initialized[msg.sender]) revert AlreadyInitialized(msg.sender);
        _initialized[msg.sender] = true;
        if (data.length == 0) return;
        LimitConfig[] memory configs = abi.decode(data, (LimitConfig[]));
        for (uint256 i = 0; i < configs.length; ++i) {
            LimitConfig memory c = configs[i];
            _setLimits(msg.sender, c.token, c.perTx, c.perWindow, c.windowSeconds, c.cumulative);
        }
    }

    /// @inheritdoc ISpendingHook
    function onUninstall(bytes calldata) external {
        if (!_initialized[msg.sender]) revert NotInitialized(msg.sender);
        _initialized[msg.sender] = false;
    }

    /// @inheritdoc ISpendingHook
    function isModuleType(uint256 moduleTypeId) external pure returns (bool) {
        return moduleTypeId == MODULE_TYPE_HOOK;
    }

    /// @inheritdoc ISpendingHook
    function isInitialized(address account) external view returns (bool) {
        return _initialized[account];
    }

    // ---------------------------------------------------------------------------------------------
    // Limits
    // ---------------------------------------------------------------------------------------------

    /// @inheritdoc ISpendingHook
    function setLimits(address token, uint256 perTx, uint256 perWindow, uint32 windowSeconds, uint256 cumulative)
        external
    {
        if (!_initialized[msg.sender]) revert NotInitialized(msg.sender);
        _setLimits(msg.sender, token, perTx, perWindow, windowSeconds, cumulative);
    }

    /// @inheritdoc ISpendingHook
    function spendState(address account, address token) external view returns (SpendState memory state) {
        TokenState storage s = _states[token][account];
        state = SpendState({
            perTx: s.perTx,
            perWindow: s.perWindow,
            windowSeconds: s.windowSeconds,
            cumulative: s.cumulative,
            windowStart: s.windowStart,
            windowSpent: s.windowSpent,
            cumulativeSpent: s.cumulativeSpent
        });
    }

    function _setLimits(
        address account,
        address token,
        uint256 perTx,
        uint256 perWindow,
        uint32 windowSeconds,
        uint256 cumulative
    ) internal {
        if (perWindow != 0 && windowSeconds == 0) revert InvalidWindow(token);
        TokenState storage s = _states[token][account];
        s.perTx = perTx;
        s.perWindow = perWindow;
        s.windowSeconds = windowSeconds;
        s.cumulative = cumulative;
        emit LimitsSet(account, token, perTx, perWindow, windowSeconds, cumulative);
    }

    // ---------------------------------------------------------------------------------------------
    // Hook
    // ---------------------------------------------------------------------------------------------

    /// @inheritdoc ISpendingHook
    function preCheck(address msgSender, uint256, bytes calldata msgData) external returns (bytes memory hookData) {
        if (!_initialized[msg.sender]) revert NotInitialized(msg.sender);
        if (msgData.length < 4) return hookData;
        bytes4 selector = bytes4(msgData[0:4]);
        if (selector != EXECUTE_SELECTOR && selector != EXECUTE_FROM_EXECUTOR_SELECTOR) return hookData;

        bytes calldata args = msgData[4:];
        bytes32 mode = bytes32(_word(args, 0));
        bytes calldata executionCalldata = _bytesAt(args, 0, 32);

        bool viaExecutor = selector == EXECUTE_FROM_EXECUTOR_SELECTOR;
        bytes1 callType = mode[0];
        bytes1 execType = mode[1];
        // Try mode is refused outright: the account swallows a failed call there, and `postCheck`
        // cannot tell which calls failed, so an outflow metered here might never happen.
        if (execType == EXECTYPE_TRY) revert TryExecutionRefused();
        if (execType != EXECTYPE_DEFAULT) revert UnsupportedExecution();
        // A non-zero mode selector (bytes 6 to 9) gives the execution data another layout, such as
        // ERC-7821's batch of batches, which the account would run but this hook would misread.
        // casting to 'bytes4' is safe because only the mode selector's four bytes are kept on purpose
        // forge-lint: disable-next-line(unsafe-typecast)
        if (bytes4(mode << 48) != bytes4(0)) revert UnsupportedExecution();

        if (callType == CALLTYPE_SINGLE) {
            _meterSingle(msgSender, executionCalldata, viaExecutor);
        } else if (callType == CALLTYPE_BATCH) {
            _meterBatch(msgSender, executionCalldata, viaExecutor);
        } else {
            revert UnsupportedExecution();
        }
    }

    /// @inheritdoc ISpendingHook
    function postCheck(bytes calldata) external pure {}

    /// @dev Meters `abi.encodePacked(target, value, callData)`.
    function _meterSingle(address msgSender, bytes calldata data, bool viaExecutor) internal {
        if (data.length < 52) revert MalformedExecution();
        address target = address(bytes20(data[0:20]));
        uint256 value = uint256(bytes32(data[20:52]));
        _meterCall(msgSender, target, value, data[52:], viaExecutor);
    }

    /// @dev Meters every element of `abi.encode(Execution[])`, with Execution = (address target,
    ///      uint256 value, bytes callData). Every offset and length is checked against `data`.
    function _meterBatch(address msgSender, bytes calldata data, bool viaExecutor) internal {
        uint256 arrayOffset = _word(data, 0);
        uint256 count = _word(data, arrayOffset);
        uint256 heads = arrayOffset + 32; // cannot overflow: _word checked arrayOffset + 32 <= data.length
        if (count > (data.length - heads) / 32) revert MalformedExecution();
        for (uint256 i = 0; i < count; ++i) {
            uint256 element = heads + _offset(data, heads + 32 * i);
            uint256 targetWord = _word(data, element);
            if (targetWord >> 160 != 0) revert MalformedExecution();
            uint256 value = _word(data, element + 32);
            bytes calldata callData = _bytesAt(data, element, element + 64);
            // casting to 'uint160' is safe because the high 96 bits were checked to be zero above
            // forge-lint: disable-next-line(unsafe-typecast)
            _meterCall(msgSender, address(uint160(targetWord)), value, callData, viaExecutor);
        }
    }

    /// @dev Meters one call of the account: its native value, then an ERC-20 outflow if it is one.
    ///      Refuses first the calls that would change the hook itself (see `ProtectedCall`).
    function _meterCall(address msgSender, address target, uint256 value, bytes calldata callData, bool viaExecutor)
        internal
    {
        _refuseProtected(target, callData, viaExecutor);
        // Value the account sends to itself does not leave it: not metered, not logged.
        if (value != 0 && target != msg.sender) {
            // casting to 'bytes32' is safe because callData is exactly 32 bytes long when it is cast
            // forge-lint: disable-next-line(unsafe-typecast)
            bytes32 nativeRef = callData.length == 32 ? bytes32(callData) : bytes32(0);
            _spend(msgSender, address(0), target, value, nativeRef);
        }
        // `address(0)` stands for the native token and holds no code: a call to it moves no token.
        if (callData.length < 4 || target == address(0)) return;
        bytes4 selector = bytes4(callData[0:4]);
        if (selector == TRANSFER_SELECTOR || selector == APPROVE_SELECTOR) {
            address to = address(uint160(_paddedWord(callData, 4)));
            if (to != msg.sender) _spend(msgSender, target, to, _paddedWord(callData, 36), _ref(callData, 68));
        } else if (selector == TRANSFER_FROM_SELECTOR) {
            if (address(uint160(_paddedWord(callData, 4))) != msg.sender) return;
            address to = address(uint160(_paddedWord(callData, 36)));
            if (to != msg.sender) _spend(msgSender, target, to, _paddedWord(callData, 68), _ref(callData, 100));
        }
    }

    /// @dev An execution may call the hook only to set the account's limits, and only through
    ///      `execute`: an executor module (an agent's session, say) spends within the limits but
    ///      cannot lift them. Calling `onUninstall` directly would leave the account with a hook that
    ///      refuses everything; calling `preCheck` would log outflows that never happened.
    ///      An executor may not call its account at all: through the account's own functions
    ///      (`installModule`, `execute`, an upgrade, a fallback handler) it could replace this hook,
    ///      install a validator of its own, or reach `execute` and set limits as the account.
    ///      An execution of the account's own may not install a hook nor uninstall this one: the
    ///      owner does that in a call of its own, which the account's `ModuleInstalled` /
    ///      `ModuleUninstalled` events make visible, never in the middle of a batch that spends
    ///      unmetered and puts this hook back.
    function _refuseProtected(address target, bytes calldata callData, bool viaExecutor) internal view {
        if (target != address(this) && target != msg.sender) return;
        // Selector of the call; a call with less than four bytes of data reaches only a receive or
        // fallback function (the hook has neither).
        bytes4 selector = callData.length < 4 ? bytes4(0) : bytes4(callData[0:4]);
        if (target == address(this)) {
            if (callData.length < 4) return;
            if (selector != this.setLimits.selector || viaExecutor) revert ProtectedCall(target, selector);
        } else if (viaExecutor) {
            revert ProtectedCall(target, selector);
        } else if (callData.length >= 4 && _paddedWord(callData, 4) == MODULE_TYPE_HOOK) {
            if (
                selector == INSTALL_MODULE_SELECTOR
                    || (selector == UNINSTALL_MODULE_SELECTOR
                        && _paddedWord(callData, 36) == uint256(uint160(address(this))))
            ) revert ProtectedCall(target, selector);
        }
    }

    /// @dev Checks one outflow of the calling account against its limits, records it and logs it.
    function _spend(address msgSender, address token, address to, uint256 amount, bytes32 ref) internal {
        TokenState storage s = _states[token][msg.sender];

        uint256 perTx = s.perTx;
        if (perTx != 0 && amount > perTx) revert PerTxLimitExceeded(token, amount, perTx);

        uint256 windowSpent; // stays 0 when the token has no window
        uint32 windowSeconds = s.windowSeconds;
        if (windowSeconds != 0) {
            uint64 windowStart = s.windowStart;
            // Windows are minutes to days long: a validator's few seconds of timestamp drift do not matter.
            // forge-lint: disable-next-line(block-timestamp)
            if (windowStart == 0 || block.timestamp >= uint256(windowStart) + windowSeconds) {
                s.windowStart = uint64(block.timestamp);
            } else {
                windowSpent = s.windowSpent;
            }
            uint256 perWindow = s.perWindow;
            if (perWindow != 0) {
                uint256 remaining = windowSpent >= perWindow ? 0 : perWindow - windowSpent;
                if (amount > remaining) revert WindowLimitExceeded(token, amount, remaining);
            }
            windowSpent = _saturatingAdd(windowSpent, amount);
            s.windowSpent = windowSpent;
        }

        uint256 cumulativeSpent = s.cumulativeSpent;
        uint256 cumulative = s.cumulative;
        if (cumulative != 0) {
            uint256 remaining = cumulativeSpent >= cumulative ? 0 : cumulative - cumulativeSpent;
            if (amount > remaining) revert CumulativeLimitExceeded(token, amount, remaining);
        }
        cumulativeSpent = _saturatingAdd(cumulativeSpent, amount);
        s.cumulativeSpent = cumulativeSpent;

        emit SpendRecorded(msg.sender, token, msgSender, to, amount, windowSpent, cumulativeSpent, ref);
    }

    // ---------------------------------------------------------------------------------------------
    // Calldata reading
    // ---------------------------------------------------------------------------------------------

    /// @dev The 32-byte word at `offset` of `data`; reverts when it is not entirely inside `data`.
    function _word(bytes calldata data, uint256 offset) internal pure returns (uint256 word) {
        if (offset > data.length || data.length - offset < 32) revert MalformedExecution();
        assembly ("memory-safe") {
            word := calldataload(add(data.offset, offset))
        }
    }

    /// @dev An ABI offset read at `at`, checked to be no larger than `data` itself (so sums cannot overflow).
    function _offset(bytes calldata data, uint256 at) internal pure returns (uint256 offset) {
        offset = _word(data, at);
        if (offset > data.length) revert MalformedExecution();
    }

    /// @dev The ABI `bytes` whose offset, relative to `base` (the start of its enclosing tuple), is stored
    ///      at `at`. `base` is at most `data.length`, so `base + offset` cannot overflow.
    function _bytesAt(bytes calldata data, uint256 base, uint256 at) internal pure returns (bytes calldata result) {
        uint256 start = base + _offset(data, at);
        uint256 length = _word(data, start);
        start += 32; // cannot overflow: _word checked start + 32 <= data.length
        if (length > data.length - start) revert MalformedExecution();
        result = data[start:start + length];
    }

    /// @dev The word at `offset` of `data` as CALLDATALOAD would read it in the callee: bytes past the
    ///      end of `data` read as zero.
    function _paddedWord(bytes calldata data, uint256 offset) internal pure returns (uint256 word) {
        uint256 length = data.length;
        if (offset >= length) return 0;
        assembly ("memory-safe") {
            word := calldataload(add(data.offset, offset))
        }
        uint256 available = length - offset;
        if (available < 32) {
            uint256 missingBits = (32 - available) * 8;
            word = (word >> missingBits) << missingBits;
        }
    }

    /// @dev The reference word after the standard arguments, or zero when the call data is shorter.
    function _ref(bytes calldata data, uint256 offset) internal pure returns (bytes32 ref) {
        if (data.length < offset + 32) return bytes32(0);
        assembly ("memory-safe") {
            ref := calldataload(add(data.offset, offset))
        }
    }

    /// @dev `a + b`, or `type(uint256).max` when that overflows.
    function _saturatingAdd(uint256 a, uint256 b) internal pure returns (uint256) {
        unchecked {
            uint256 c = a + b;
            return c < a ? type(uint256).max : c;
        }
    }
}
