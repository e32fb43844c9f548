// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// @title IERC3009
/// @notice EIP-3009 "Transfer With Authorization": the holder signs an EIP-712 message off-chain and
///         anybody (`transferWithAuthorization`) or the payee only (`receiveWithAuthorization`)
///         submits it. Each authorization carries a random 32-byte nonce that can be used once.
/// @dev The signature comes either split (`v`, `r`, `s`, an EOA's ECDSA signature) or as `bytes`
///      (65-byte ECDSA for an EOA, anything an ERC-1271 contract wallet accepts for a contract).
interface IERC3009 {
    /// @notice Emitted when an authorization is used (its transfer happened).
    /// @param authorizer The holder who signed it.
    /// @param nonce The authorization's nonce.
    event AuthorizationUsed(address indexed authorizer, bytes32 indexed nonce);

    /// @notice Emitted when the holder cancels an unused authorization.
    /// @param authorizer The holder who signed it.
    /// @param nonce The authorization's nonce.
    event AuthorizationCanceled(address indexed authorizer, bytes32 indexed nonce);

    /// @notice The authorization is not valid yet: `block.timestamp` must be greater than `validAfter`.
    /// @param validAfter The authorization's `validAfter`.
    /// @param timestamp The current block's timestamp.
    error AuthorizationNotYetValid(uint256 validAfter, uint256 timestamp);

    /// @notice The authorization has expired: `block.timestamp` must be less than `validBefore`.
    /// @param validBefore The authorization's `validBefore`.
    /// @param timestamp The current block's timestamp.
    error AuthorizationExpired(uint256 validBefore, uint256 timestamp);

    /// @notice The nonce was already used or canceled.
    /// @param authorizer The holder.
    /// @param nonce The nonce.
    error AuthorizationAlreadyUsed(address authorizer, bytes32 nonce);

    /// @notice The signature is not the authorizer's.
    /// @param authorizer The address the signature should belong to.
    error InvalidSignature(address authorizer);

    /// @notice `receiveWithAuthorization` was called by someone other than the payee.
    /// @param caller The caller.
    /// @param payee The authorization's `to`.
    error CallerNotPayee(address caller, address payee);

    /// @notice Moves `value` from `from` to `to` with `from`'s signed authorization (split ECDSA signature).
    function transferWithAuthorization(
        address from,
        address to,
        uint256 value,
        uint256 validAfter,
        uint256 validBefore,
        bytes32 nonce,
        uint8 v,
        bytes32 r,
        bytes32 s
    ) external;

    /// @notice Moves `value` from `from` to `to` with `from`'s signed authorization (ECDSA or ERC-1271 bytes).
    function transferWithAuthorization(
        address from,
        address to,
        uint256 value,
        uint256 validAfter,
        uint256 validBefore,
        bytes32 nonce,
        bytes calldata signature
    ) external;

    /// @notice Like `transferWithAuthorization`, but only `to` may submit it (split ECDSA signature).
    function receiveWithAuthorization(
        address from,
        address to,
        uint256 value,
        uint256 validAfter,
        uint256 validBefore,
        bytes32 nonce,
        uint8 v,
        bytes32 r,
        bytes32 s
    ) external;

    /// @notice Like `transferWithAuthorization`, but only `to` may submit it (ECDSA or ERC-1271 bytes).
    function receiveWithAuthorization(
        address from,
        address to,
        uint256 value,
        uint256 validAfter,
        uint256 validBefore,
        bytes32 nonce,
        bytes calldata signature
    ) external;

    /// @notice Cancels an unused authorization of `authorizer` (split ECDSA signature).
    function cancelAuthorization(address authorizer, bytes32 nonce, uint8 v, bytes32 r, bytes32 s) external;

    /// @notice Cancels an unused authorization of `authorizer` (ECDSA or ERC-1271 bytes).
    function cancelAuthorization(address authorizer, bytes32 nonce, bytes calldata signature) external;

    /// @notice Whether `nonce` of `authorizer` was used or canceled.
    function authorizationState(address authorizer, bytes32 nonce) external view returns (bool);
}
