// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {Vm} from "./Vm.sol";

/// @title Test
/// @notice A minimal test base: the cheatcode handle, `bound`, `makeAddr` and invariant targets.
abstract contract Test {
    /// @dev The forge cheatcode address, `address(uint160(uint256(keccak256("hevm cheat code"))))`.
    Vm internal constant vm = Vm(0x7109709ECfa91a80626fF3989D68f67F5b1DD12D);

    address[] private _targetContracts;

    /// @notice Maps any `x` into `[min, max]`, keeping `x` itself when it already lies there.
    function bound(uint256 x, uint256 min, uint256 max) internal pure returns (uint256) {
        require(min <= max, "bound: min > max");
        if (x >= min && x <= max) return x;
        // max - min + 1 cannot overflow: [0, type(uint256).max] contains every x and returned above.
        return min + (x % (max - min + 1));
    }

    /// @notice A deterministic, labelled address for a name.
    function makeAddr(string memory name) internal returns (address addr) {
        addr = address(uint160(uint256(keccak256(bytes(name)))));
        vm.label(addr, name);
    }

    /// @notice Restricts invariant fuzzing to `target`'s functions.
    function targetContract(address target) internal {
        _targetContracts.push(target);
    }

    /// @notice Read by forge: the contracts whose functions invariant runs call.
    function targetContracts() public view returns (address[] memory) {
        return _targetContracts;
    }
}
