// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {Test} from "./utils/Test.sol";
import {IERC3009} from "../src/interfaces/IERC3009.sol";
import {TestUSDC} from "../src/TestUSDC.sol";

/// @notice A contract wallet that accepts (ERC-1271) what its owner's key signed.
contract OwnedWallet {
    address internal immutable owner;

    constructor(address owner_) {
        owner = owner_;
    }

    function isValidSignature(bytes32 digest, bytes calldata signature) external view returns (bytes4) {
        if (signature.length != 65) return 0xffffffff;
        address signer = ecrecover(digest, uint8(signature[64]), bytes32(signature[0:32]), bytes32(signature[32:64]));
        return signer == owner ? bytes4(0x1626ba7e) : bytes4(0xffffffff);
    }
}

contract TestUSDCTest is Test {
    event Transfer(address indexed from, address indexed to, uint256 value);

    uint256 internal constant USDC = 1e6;
    uint256 internal constant PAYER_KEY = 0xA11CE;
    uint256 internal constant OTHER_KEY = 0xB0B;
    uint256 internal constant NOW = 1_700_000_000;
    bytes32 internal constant NONCE = keccak256("nonce-1");
    uint256 internal constant S_MAX = 0x7FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF5D576E7357A4501DDFE92F46681B20A0;
    uint256 internal constant SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141;

    TestUSDC internal token;
    address internal payer;
    address internal payee;
    address internal relayer;

    /// @dev One authorization's fields.
    struct Auth {
        address from;
        address to;
        uint256 value;
        uint256 validAfter;
        uint256 validBefore;
        bytes32 nonce;
    }

    function setUp() public {
        vm.warp(NOW);
        token = new TestUSDC("USD Coin", "tUSDC", "2");
        payer = vm.addr(PAYER_KEY);
        payee = makeAddr("payee");
        relayer = makeAddr("relayer");
        vm.label(payer, "payer");
        token.mint(payer, 100 * USDC);
    }

    // =============================================================== helpers

    function _auth(uint256 value) internal view returns (Auth memory) {
        return Auth(payer, payee, value, 0, NOW + 60, NONCE);
    }

    function _domainSeparator(uint256 chainId) internal view returns (bytes32) {
        return keccak256(
            abi.encode(
                keccak256("EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"),
                keccak256("USD Coin"),
                keccak256("2"),
                chainId,
                address(token)
            )
        );
    }

    function _digest(bytes32 typeHash, Auth memory a, uint256 chainId) internal view returns (bytes32) {
        bytes32 structHash =
            keccak256(abi.encode(typeHash, a.from, a.to, a.value, a.validAfter, a.validBefore, a.nonce));
        return keccak256(abi.encodePacked(hex"1901", _domainSeparator(chainId), structHash));
    }

    function _sign(uint256 key, bytes32 typeHash, Auth memory a) internal view returns (uint8, bytes32, bytes32) {
        return vm.sign(key, _digest(typeHash, a, block.chainid));
    }

    function _signBytes(uint256 key, bytes32 typeHash, Auth memory a) internal view returns (bytes memory) {
        (uint8 v, bytes32 r, bytes32 s) = _sign(key, typeHash, a);
        return abi.encodePacked(r, s, v);
    }

    function _transfer(Auth memory a, uint8 v, bytes32 r, bytes32 s) internal {
        token.transferWithAuthorization(a.from, a.to, a.value, a.validAfter, a.validBefore, a.nonce, v, r, s);
    }

    function _transferBytes(Auth memory a, bytes memory signature) internal {
        token.transferWithAuthorization(a.from, a.to, a.value, a.validAfter, a.validBefore, a.nonce, signature);
    }

    function _transferTypehash() internal view returns (bytes32) {
        return token.TRANSFER_WITH_AUTHORIZATION_TYPEHASH();
    }

    // =============================================================== metadata and domain

    function test_Metadata() public view {
        vm.assertEq(keccak256(bytes(token.name())), keccak256("USD Coin"), "name");
        vm.assertEq(keccak256(bytes(token.symbol())), keccak256("tUSDC"), "symbol");
        vm.assertEq(keccak256(bytes(token.version())), keccak256("2"), "version");
        vm.assertEq(uint256(token.decimals()), 6, "decimals");
        vm.assertEq(token.totalSupply(), 100 * USDC, "totalSupply");
    }

    function test_TypeHashes_AreEip3009() public view {
        vm.assertEq(
            token.TRANSFER_WITH_AUTHORIZATION_TYPEHASH(),
            0x7c7c6cdb67a18743f49ec6fa9b35f50d52ed05cbed4cc592e13b44501c1a2267,
            "transfer typehash"
        );
        vm.assertEq(
            token.RECEIVE_WITH_AUTHORIZATION_TYPEHASH(),
            0xd099cc98ef71107a616c4f0f941f04c322d8e254fe26b3c6668db87aae413de8,
            "receive typehash"
        );
        vm.assertEq(
            token.CANCEL_AUTHORIZATION_TYPEHASH(),
            0x158b0a9edf7a828aad02f63cd515c68ef2f50ba807396f6d12842833a1597429,
            "cancel typehash"
        );
    }

    function test_DomainSeparator_IsEip712() public view {
        vm.assertEq(token.DOMAIN_SEPARATOR(), _domainSeparator(block.chainid), "separator");
    }

    function test_DomainSeparator_FollowsChainId() public {
        vm.chainId(8453);
        vm.assertEq(token.DOMAIN_SEPARATOR(), _domainSeparator(8453), "separator after fork");
    }

    function test_Eip712Domain_DescribesTheDomain() public view {
        (
            bytes1 fields,
            string memory name,
            string memory version,
            uint256 chainId,
            address verifyingContract,
            bytes32 salt,
            uint256[] memory extensions
        ) = token.eip712Domain();
        vm.assertEq(bytes32(fields), bytes32(bytes1(0x0f)), "fields");
        vm.assertEq(keccak256(bytes(name)), keccak256("USD Coin"), "name");
        vm.assertEq(keccak256(bytes(version)), keccak256("2"), "version");
        vm.assertEq(chainId, block.chainid, "chainId");
        vm.assertEq(verifyingContract, address(token), "verifyingContract");
        vm.assertEq(salt, bytes32(0), "salt");
        vm.assertEq(extensions.length, 0, "extensions");
    }

    // =============================================================== transferWithAuthorization

    function test_TransferWithAuthorization_MovesTokens() public {
        Auth memory a = _auth(10 * USDC);
        (uint8 v, bytes32 r, bytes32 s) = _sign(PAYER_KEY, _transferTypehash(), a);

        vm.expectEmit(true, true, false, false, address(token));
        emit IERC3009.AuthorizationUsed(payer, NONCE);
        vm.expectEmit(true, true, false, true, address(token));
        emit Transfer(payer, payee, 10 * USDC);
        vm.prank(relayer);
        _transfer(a, v, r, s);

        vm.assertEq(token.balanceOf(payer), 90 * USDC, "payer");
        vm.assertEq(token.balanceOf(payee), 10 * USDC, "payee");
        vm.assertEq(token.balanceOf(relayer), 0, "relayer");
        vm.assertTrue(token.authorizationState(payer, NONCE), "nonce used");
    }

    function test_TransferWithAuthorization_BytesSignature() public {
        Auth memory a = _auth(3 * USDC);
        vm.prank(relayer);
        _transferBytes(a, _signBytes(PAYER_KEY, _transferTypehash(), a));
        vm.assertEq(token.balanceOf(payee), 3 * USDC, "payee");
        vm.assertTrue(token.authorizationState(payer, NONCE), "nonce used");
    }

    function test_TransferWithAuthorization_ContractWallet() public {
        OwnedWallet wallet = new OwnedWallet(payer);
        token.mint(address(wallet), 5 * USDC);
        Auth memory a = Auth(address(wallet), payee, 5 * USDC, 0, NOW + 60, NONCE);
        _transferBytes(a, _signBytes(PAYER_KEY, _transferTypehash(), a));
        vm.assertEq(token.balanceOf(payee), 5 * USDC, "payee");
    }

    function test_RevertWhen_ContractWalletRejects() public {
        OwnedWallet wallet = new OwnedWallet(payer);
        token.mint(address(wallet), 5 * USDC);
        Auth memory a = Auth(address(wallet), payee, 5 * USDC, 0, NOW + 60, NONCE);
        bytes memory signature = _signBytes(OTHER_KEY, _transferTypehash(), a);
        vm.expectRevert(abi.encodeWithSelector(IERC3009.InvalidSignature.selector, address(wallet)));
        _transferBytes(a, signature);
    }

    function test_RevertWhen_AuthorizationReplayed() public {
        Auth memory a = _auth(USDC);
        (uint8 v, bytes32 r, bytes32 s) = _sign(PAYER_KEY, _transferTypehash(), a);
        _transfer(a, v, r, s);

        vm.expectRevert(abi.encodeWithSelector(IERC3009.AuthorizationAlreadyUsed.selector, payer, NONCE));
        _transfer(a, v, r, s);
        vm.expectRevert(abi.encodeWithSelector(IERC3009.AuthorizationAlreadyUsed.selector, payer, NONCE));
        _transferBytes(a, abi.encodePacked(r, s, v));
        vm.assertEq(token.balanceOf(payee), USDC, "paid once");
    }

    function test_RevertWhen_AuthorizationExpired() public {
        Auth memory a = _auth(USDC);
        (uint8 v, bytes32 r, bytes32 s) = _sign(PAYER_KEY, _transferTypehash(), a);
        vm.warp(a.validBefore);
        vm.expectRevert(abi.encodeWithSelector(IERC3009.AuthorizationExpired.selector, a.validBefore, a.validBefore));
        _transfer(a, v, r, s);
        vm.assertFalse(token.authorizationState(payer, NONCE), "nonce unused");
    }

    function test_RevertWhen_AuthorizationNotYetValid() public {
        Auth memory a = _auth(USDC);
        a.validAfter = NOW;
        (uint8 v, bytes32 r, bytes32 s) = _sign(PAYER_KEY, _transferTypehash(), a);
        vm.expectRevert(abi.encodeWithSelector(IERC3009.AuthorizationNotYetValid.selector, NOW, NOW));
        _transfer(a, v, r, s);

        vm.warp(NOW + 1);
        _transfer(a, v, r, s);
        vm.assertEq(token.balanceOf(payee), USDC, "valid a second later");
    }

    function test_RevertWhen_SignedByAnotherKey() public {
        Auth memory a = _auth(USDC);
        (uint8 v, bytes32 r, bytes32 s) = _sign(OTHER_KEY, _transferTypehash(), a);
        vm.expectRevert(abi.encodeWithSelector(IERC3009.InvalidSignature.selector, payer));
        _transfer(a, v, r, s);
        vm.expectRevert(abi.encodeWithSelector(IERC3009.InvalidSignature.selector, payer));
        _transferBytes(a, abi.encodePacked(r, s, v));
    }

    function test_RevertWhen_ValueDiffersFromSigned() public {
        Auth memory a = _auth(USDC);
        (uint8 v, bytes32 r, bytes32 s) = _sign(PAYER_KEY, _transferTypehash(), a);
        a.value = 2 * USDC;
        vm.expectRevert(abi.encodeWithSelector(IERC3009.InvalidSignature.selector, payer));
        _transfer(a, v, r, s);
    }

    function test_RevertWhen_SignedForAnotherChain() public {
        Auth memory a = _auth(USDC);
        (uint8 v, bytes32 r, bytes32 s) = vm.sign(PAYER_KEY, _digest(_transferTypehash(), a, block.chainid + 1));
        vm.expectRevert(abi.encodeWithSelector(IERC3009.InvalidSignature.selector, payer));
        _transfer(a, v, r, s);
    }

    function test_RevertWhen_SignatureIsMalleated() public {
        Auth memory a = _auth(USDC);
        (uint8 v, bytes32 r, bytes32 s) = _sign(PAYER_KEY, _transferTypehash(), a);
        // The same signature with s' = n - s and the other v recovers the same signer: refused.
        bytes32 highS = bytes32(SECP256K1_N - uint256(s));
        uint8 otherV = v == 27 ? 28 : 27;
        vm.assertTrue(uint256(highS) > S_MAX, "malleated s is high");
        vm.expectRevert(abi.encodeWithSelector(IERC3009.InvalidSignature.selector, payer));
        _transfer(a, otherV, r, highS);
    }

    function test_RevertWhen_BytesSignatureHasWrongLength() public {
        Auth memory a = _auth(USDC);
        (uint8 v, bytes32 r, bytes32 s) = _sign(PAYER_KEY, _transferTypehash(), a);
        vm.expectRevert(abi.encodeWithSelector(IERC3009.InvalidSignature.selector, payer));
        _transferBytes(a, abi.encodePacked(r, s, v, uint8(0)));
    }

    function test_RevertWhen_BalanceTooSmall() public {
        Auth memory a = _auth(101 * USDC);
        (uint8 v, bytes32 r, bytes32 s) = _sign(PAYER_KEY, _transferTypehash(), a);
        vm.expectRevert(abi.encodeWithSelector(TestUSDC.InsufficientBalance.selector, payer, 100 * USDC, 101 * USDC));
        _transfer(a, v, r, s);
        vm.assertFalse(token.authorizationState(payer, NONCE), "nonce unused");
    }

    function testFuzz_TransferWithAuthorization(uint256 value, uint256 lifetime, bytes32 nonce) public {
        value = bound(value, 0, 100 * USDC);
        lifetime = bound(lifetime, 1, 365 days);
        Auth memory a = Auth(payer, payee, value, 0, NOW + lifetime, nonce);
        (uint8 v, bytes32 r, bytes32 s) = _sign(PAYER_KEY, _transferTypehash(), a);
        _transfer(a, v, r, s);
        vm.assertEq(token.balanceOf(payee), value, "payee");
        vm.assertEq(token.balanceOf(payer), 100 * USDC - value, "payer");
        vm.assertEq(token.totalSupply(), 100 * USDC, "supply");
        vm.assertTrue(token.authorizationState(payer, nonce), "nonce used");
    }

    // =============================================================== receiveWithAuthorization

    function test_ReceiveWithAuthorization_PayeeSubmits() public {
        Auth memory a = _auth(4 * USDC);
        (uint8 v, bytes32 r, bytes32 s) = _sign(PAYER_KEY, token.RECEIVE_WITH_AUTHORIZATION_TYPEHASH(), a);
        vm.prank(payee);
        token.receiveWithAuthorization(a.from, a.to, a.value, a.validAfter, a.validBefore, a.nonce, v, r, s);
        vm.assertEq(token.balanceOf(payee), 4 * USDC, "payee");
        vm.assertTrue(token.authorizationState(payer, NONCE), "nonce used");
    }

    function test_ReceiveWithAuthorization_BytesSignature() public {
        Auth memory a = _auth(4 * USDC);
        bytes memory signature = _signBytes(PAYER_KEY, token.RECEIVE_WITH_AUTHORIZATION_TYPEHASH(), a);
        vm.prank(payee);
        token.receiveWithAuthorization(a.from, a.to, a.value, a.validAfter, a.validBefore, a.nonce, signature);
        vm.assertEq(token.balanceOf(payee), 4 * USDC, "payee");
    }

    function test_RevertWhen_ReceiveSubmittedByOther() public {
        Auth memory a = _auth(USDC);
        (uint8 v, bytes32 r, bytes32 s) = _sign(PAYER_KEY, token.RECEIVE_WITH_AUTHORIZATION_TYPEHASH(), a);
        vm.prank(relayer);
        vm.expectRevert(abi.encodeWithSelector(IERC3009.CallerNotPayee.selector, relayer, payee));
        token.receiveWithAuthorization(a.from, a.to, a.value, a.validAfter, a.validBefore, a.nonce, v, r, s);
    }

    function test_RevertWhen_ReceiveSignatureUsedForTransfer() public {
        Auth memory a = _auth(USDC);
        (uint8 v, bytes32 r, bytes32 s) = _sign(PAYER_KEY, token.RECEIVE_WITH_AUTHORIZATION_TYPEHASH(), a);
        vm.prank(relayer);
        vm.expectRevert(abi.encodeWithSelector(IERC3009.InvalidSignature.selector, payer));
        _transfer(a, v, r, s);
    }

    // =============================================================== cancelAuthorization

    function _cancelDigest(bytes32 nonce) internal view returns (bytes32) {
        bytes32 structHash = keccak256(abi.encode(token.CANCEL_AUTHORIZATION_TYPEHASH(), payer, nonce));
        return keccak256(abi.encodePacked(hex"1901", _domainSeparator(block.chainid), structHash));
    }

    function test_CancelAuthorization_BlocksTheTransfer() public {
        Auth memory a = _auth(USDC);
        (uint8 v, bytes32 r, bytes32 s) = _sign(PAYER_KEY, _transferTypehash(), a);
        (uint8 cv, bytes32 cr, bytes32 cs) = vm.sign(PAYER_KEY, _cancelDigest(NONCE));

        vm.expectEmit(true, true, false, false, address(token));
        emit IERC3009.AuthorizationCanceled(payer, NONCE);
        token.cancelAuthorization(payer, NONCE, cv, cr, cs);
        vm.assertTrue(token.authorizationState(payer, NONCE), "nonce spent");

        vm.expectRevert(abi.encodeWithSelector(IERC3009.AuthorizationAlreadyUsed.selector, payer, NONCE));
        _transfer(a, v, r, s);
    }

    function test_CancelAuthorization_BytesSignature() public {
        (uint8 cv, bytes32 cr, bytes32 cs) = vm.sign(PAYER_KEY, _cancelDigest(NONCE));
        token.cancelAuthorization(payer, NONCE, abi.encodePacked(cr, cs, cv));
        vm.assertTrue(token.authorizationState(payer, NONCE), "nonce spent");
    }

    function test_RevertWhen_CancelSignedByAnotherKey() public {
        (uint8 cv, bytes32 cr, bytes32 cs) = vm.sign(OTHER_KEY, _cancelDigest(NONCE));
        vm.expectRevert(abi.encodeWithSelector(IERC3009.InvalidSignature.selector, payer));
        token.cancelAuthorization(payer, NONCE, cv, cr, cs);
    }

    // =============================================================== ERC-20

    function test_Transfer_MovesTokens() public {
        vm.prank(payer);
        vm.assertTrue(token.transfer(payee, USDC), "returns true");
        vm.assertEq(token.balanceOf(payee), USDC, "payee");
    }

    function test_TransferFrom_SpendsAllowance() public {
        vm.prank(payer);
        token.approve(relayer, 2 * USDC);
        vm.prank(relayer);
        vm.assertTrue(token.transferFrom(payer, payee, USDC), "returns true");
        vm.assertEq(token.allowance(payer, relayer), USDC, "allowance left");
        vm.prank(relayer);
        vm.expectRevert(abi.encodeWithSelector(TestUSDC.InsufficientAllowance.selector, relayer, USDC, 2 * USDC));
        // forge-lint: disable-next-line(erc20-unchecked-transfer)
        token.transferFrom(payer, payee, 2 * USDC);
    }
}
