// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {IERC3009} from "./interfaces/IERC3009.sol";

/// @title TestUSDC
/// @notice A USDC-like ERC-20 for tests and local chains: 6 decimals, open minting, and EIP-3009
///         transfers with authorization under an EIP-712 domain of a chosen name and version (USDC's
///         own is "USD Coin", "2"), the way x402's `exact` EVM scheme pays.
/// @dev Written for development chains: anybody can mint. The EIP-712 domain separator is
///      recomputed when the chain id changes (a fork), so signatures never replay across chains.
contract TestUSDC is IERC3009 {
    /// @notice keccak256 of the EIP-712 type of `transferWithAuthorization`.
    bytes32 public constant TRANSFER_WITH_AUTHORIZATION_TYPEHASH = keccak256(
        "TransferWithAuthorization(address from,address to,uint256 value,uint256 validAfter,uint256 validBefore,bytes32 nonce)"
    );

    /// @notice keccak256 of the EIP-712 type of `receiveWithAuthorization`.
    bytes32 public constant RECEIVE_WITH_AUTHORIZATION_TYPEHASH = keccak256(
        "ReceiveWithAuthorization(address from,address to,uint256 value,uint256 validAfter,uint256 validBefore,bytes32 nonce)"
    );

    /// @notice keccak256 of the EIP-712 type of `cancelAuthorization`.
    bytes32 public constant CANCEL_AUTHORIZATION_TYPEHASH =
        keccak256("CancelAuthorization(address authorizer,bytes32 nonce)");

    bytes32 private constant DOMAIN_TYPEHASH =
        keccak256("EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)");

    /// @dev Largest `s` of a canonical secp256k1 signature (EIP-2): half the curve order.
    uint256 private constant S_MAX = 0x7FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF5D576E7357A4501DDFE92F46681B20A0;

    /// @dev `IERC1271.isValidSignature.selector`.
    bytes4 private constant ERC1271_MAGIC = 0x1626ba7e;

    /// @notice The token name, also the EIP-712 domain name.
    string public name;

    /// @notice The token symbol.
    string public symbol;

    /// @notice The EIP-712 domain version.
    string public version;

    /// @notice Always 6, like USDC.
    uint8 public constant decimals = 6;

    /// @notice Total minted.
    uint256 public totalSupply;

    /// @notice Balance of each holder.
    mapping(address holder => uint256) public balanceOf;

    /// @notice How much `spender` may still move from `holder`.
    mapping(address holder => mapping(address spender => uint256)) public allowance;

    mapping(address authorizer => mapping(bytes32 nonce => bool)) private _authorizationUsed;

    bytes32 private immutable _nameHash;
    bytes32 private immutable _versionHash;
    uint256 private immutable _cachedChainId;
    bytes32 private immutable _cachedDomainSeparator;

    /// @notice Emitted when tokens move, minting included (`from` = 0).
    /// @param from The sender.
    /// @param to The recipient.
    /// @param value The amount.
    event Transfer(address indexed from, address indexed to, uint256 value);

    /// @notice Emitted when an allowance is set.
    /// @param owner The holder.
    /// @param spender The spender.
    /// @param value The new allowance.
    event Approval(address indexed owner, address indexed spender, uint256 value);

    /// @notice The sender's balance is too small.
    /// @param holder The holder.
    /// @param balance The holder's balance.
    /// @param needed The amount asked for.
    error InsufficientBalance(address holder, uint256 balance, uint256 needed);

    /// @notice The spender's allowance is too small.
    /// @param spender The spender.
    /// @param allowance The allowance.
    /// @param needed The amount asked for.
    error InsufficientAllowance(address spender, uint256 allowance, uint256 needed);

    /// @notice Creates the token.
    /// @param name_ The token name and EIP-712 domain name (USDC: "USD Coin").
    /// @param symbol_ The token symbol.
    /// @param version_ The EIP-712 domain version (USDC: "2").
    constructor(string memory name_, string memory symbol_, string memory version_) {
        name = name_;
        symbol = symbol_;
        version = version_;
        _nameHash = keccak256(bytes(name_));
        _versionHash = keccak256(bytes(version_));
        _cachedChainId = block.chainid;
        _cachedDomainSeparator = _domainSeparator();
    }

    // ================================================================== ERC-20

    /// @notice Mints tokens to anyone; there is no access control.
    /// @param to The recipient.
    /// @param amount The amount.
    function mint(address to, uint256 amount) external {
        totalSupply += amount;
        unchecked {
            balanceOf[to] += amount; // cannot overflow: bounded by totalSupply
        }
        emit Transfer(address(0), to, amount);
    }

    /// @notice Moves tokens from the caller.
    /// @param to The recipient.
    /// @param amount The amount.
    /// @return Always true.
    function transfer(address to, uint256 amount) external returns (bool) {
        _transfer(msg.sender, to, amount);
        return true;
    }

    /// @notice Moves tokens from `from` using the caller's allowance (an allowance of
    ///         `type(uint256).max` is never decreased).
    /// @param from The holder.
    /// @param to The recipient.
    /// @param amount The amount.
    /// @return Always true.
    function transferFrom(address from, address to, uint256 amount) external returns (bool) {
        uint256 allowed = allowance[from][msg.sender];
        if (allowed != type(uint256).max) {
            if (allowed < amount) revert InsufficientAllowance(msg.sender, allowed, amount);
            unchecked {
                allowance[from][msg.sender] = allowed - amount;
            }
        }
        _transfer(from, to, amount);
        return true;
    }

    /// @notice Sets the caller's allowance for `spender`.
    /// @param spender The spender.
    /// @param amount The allowance.
    /// @return Always true.
    function approve(address spender, uint256 amount) external returns (bool) {
        allowance[msg.sender][spender] = amount;
        emit Approval(msg.sender, spender, amount);
        return true;
    }

    // ================================================================== EIP-3009

    /// @inheritdoc IERC3009
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
    ) external {
        bytes32 digest = _useAuthorization(
            TRANSFER_WITH_AUTHORIZATION_TYPEHASH, from, to, value, validAfter, validBefore, nonce
        );
        _checkEcdsa(from, digest, v, r, s);
        _transfer(from, to, value);
    }

    /// @inheritdoc IERC3009
    function transferWithAuthorization(
        address from,
        address to,
        uint256 value,
        uint256 validAfter,
        uint256 validBefore,
        bytes32 nonce,
        bytes calldata signature
    ) external {
        bytes32 digest = _useAuthorization(
            TRANSFER_WITH_AUTHORIZATION_TYPEHASH, from, to, value, validAfter, validBefore, nonce
        );
        _checkSignature(from, digest, signature);
        _transfer(from, to, value);
    }

    /// @inheritdoc IERC3009
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
    ) external {
        if (msg.sender != to) revert CallerNotPayee(msg.sender, to);
        bytes32 digest =
            _useAuthorization(RECEIVE_WITH_AUTHORIZATION_TYPEHASH, from, to, value, validAfter, validBefore, nonce);
        _checkEcdsa(from, digest, v, r, s);
        _transfer(from, to, value);
    }

    /// @inheritdoc IERC3009
    function receiveWithAuthorization(
        address from,
        address to,
        uint256 value,
        uint256 validAfter,
        uint256 validBefore,
        bytes32 nonce,
        bytes calldata signature
    ) external {
        if (msg.sender != to) revert CallerNotPayee(msg.sender, to);
        bytes32 digest =
            _useAuthorization(RECEIVE_WITH_AUTHORIZATION_TYPEHASH, from, to, value, validAfter, validBefore, nonce);
        _checkSignature(from, digest, signature);
        _transfer(from, to, value);
    }

    /// @inheritdoc IERC3009
    function cancelAuthorization(address authorizer, bytes32 nonce, uint8 v, bytes32 r, bytes32 s) external {
        bytes32 digest = _useCancellation(authorizer, nonce);
        _checkEcdsa(authorizer, digest, v, r, s);
    }

    /// @inheritdoc IERC3009
    function cancelAuthorization(address authorizer, bytes32 nonce, bytes calldata signature) external {
        bytes32 digest = _useCancellation(authorizer, nonce);
        _checkSignature(authorizer, digest, signature);
    }

    /// @inheritdoc IERC3009
    function authorizationState(address authorizer, bytes32 nonce) external view returns (bool) {
        return _authorizationUsed[authorizer][nonce];
    }

    // ================================================================== EIP-712

    /// @notice The EIP-712 domain separator for this chain.
    /// @return The separator of `EIP712Domain(name, version, chainId, verifyingContract)`.
    function DOMAIN_SEPARATOR() external view returns (bytes32) {
        return block.chainid == _cachedChainId ? _cachedDomainSeparator : _domainSeparator();
    }

    /// @notice The EIP-712 domain, as EIP-5267 describes it.
    /// @return fields 0x0f: name, version, chainId and verifyingContract are set.
    /// @return name_ The domain name.
    /// @return version_ The domain version.
    /// @return chainId The chain id.
    /// @return verifyingContract This contract.
    /// @return salt Unused (zero).
    /// @return extensions Unused (empty).
    function eip712Domain()
        external
        view
        returns (
            bytes1 fields,
            string memory name_,
            string memory version_,
            uint256 chainId,
            address verifyingContract,
            bytes32 salt,
            uint256[] memory extensions
        )
    {
        return (hex"0f", name, version, block.chainid, address(this), bytes32(0), new uint256[](0));
    }

    // ================================================================== internals

    /// @dev Checks the validity window and the nonce, marks the nonce used and returns the digest to sign.
    function _useAuthorization(
        bytes32 typeHash,
        address from,
        address to,
        uint256 value,
        uint256 validAfter,
        uint256 validBefore,
        bytes32 nonce
    ) private returns (bytes32) {
        // EIP-3009's validity window is defined on block time.
        // forge-lint: disable-next-line(block-timestamp)
        if (block.timestamp <= validAfter) revert AuthorizationNotYetValid(validAfter, block.timestamp);
        // forge-lint: disable-next-line(block-timestamp)
        if (block.timestamp >= validBefore) revert AuthorizationExpired(validBefore, block.timestamp);
        _markUsed(from, nonce);
        emit AuthorizationUsed(from, nonce);
        return _hashTyped(keccak256(abi.encode(typeHash, from, to, value, validAfter, validBefore, nonce)));
    }

    function _useCancellation(address authorizer, bytes32 nonce) private returns (bytes32) {
        _markUsed(authorizer, nonce);
        emit AuthorizationCanceled(authorizer, nonce);
        return _hashTyped(keccak256(abi.encode(CANCEL_AUTHORIZATION_TYPEHASH, authorizer, nonce)));
    }

    function _markUsed(address authorizer, bytes32 nonce) private {
        if (_authorizationUsed[authorizer][nonce]) revert AuthorizationAlreadyUsed(authorizer, nonce);
        _authorizationUsed[authorizer][nonce] = true;
    }

    /// @dev A contract signer is asked through ERC-1271; an EOA's signature must be 65-byte ECDSA (r, s, v).
    function _checkSignature(address signer, bytes32 digest, bytes calldata signature) private view {
        if (signer.code.length > 0) {
            (bool ok, bytes memory result) = signer.staticcall(abi.encodeWithSelector(ERC1271_MAGIC, digest, signature));
            // Casting to bytes4 keeps the first 4 bytes of the 32-byte answer, where an ABI-encoded bytes4 lives.
            // forge-lint: disable-next-line(unsafe-typecast)
            if (!ok || result.length != 32 || bytes4(result) != ERC1271_MAGIC) revert InvalidSignature(signer);
            return;
        }
        if (signature.length != 65) revert InvalidSignature(signer);
        _checkEcdsa(signer, digest, uint8(signature[64]), bytes32(signature[0:32]), bytes32(signature[32:64]));
    }

    /// @dev Canonical signatures only (low `s`, `v` 27 or 28), so a signature cannot be reshaped and replayed.
    function _checkEcdsa(address signer, bytes32 digest, uint8 v, bytes32 r, bytes32 s) private pure {
        if (uint256(s) > S_MAX || (v != 27 && v != 28)) revert InvalidSignature(signer);
        address recovered = ecrecover(digest, v, r, s);
        if (recovered == address(0) || recovered != signer) revert InvalidSignature(signer);
    }

    function _hashTyped(bytes32 structHash) private view returns (bytes32) {
        bytes32 separator = block.chainid == _cachedChainId ? _cachedDomainSeparator : _domainSeparator();
        return keccak256(abi.encodePacked(hex"1901", separator, structHash));
    }

    function _domainSeparator() private view returns (bytes32) {
        return keccak256(abi.encode(DOMAIN_TYPEHASH, _nameHash, _versionHash, block.chainid, address(this)));
    }

    function _transfer(address from, address to, uint256 amount) private {
        uint256 balance = balanceOf[from];
        if (balance < amount) revert InsufficientBalance(from, balance, amount);
        unchecked {
            balanceOf[from] = balance - amount;
            balanceOf[to] += amount; // cannot overflow: bounded by totalSupply
        }
        emit Transfer(from, to, amount);
    }
}
