// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// @title IERC7579Hook
/// @notice The parts of the ERC-7579 module and hook interfaces that an account calls on a hook.
interface IERC7579Hook {
    /// @notice Called by the account when it installs the module.
    /// @param data Module-specific initialisation data.
    function onInstall(bytes calldata data) external;

    /// @notice Called by the account when it uninstalls the module.
    /// @param data Module-specific de-initialisation data.
    function onUninstall(bytes calldata data) external;

    /// @notice Tells whether the module is of a given module type.
    /// @param moduleTypeId The ERC-7579 module type id (4 = hook).
    /// @return True when the module is of that type.
    function isModuleType(uint256 moduleTypeId) external view returns (bool);

    /// @notice Called by the account before it executes.
    /// @param msgSender The caller of the account.
    /// @param msgValue The value sent to the account.
    /// @param msgData The account's calldata.
    /// @return hookData Data handed back to `postCheck`.
    function preCheck(address msgSender, uint256 msgValue, bytes calldata msgData)
        external
        returns (bytes memory hookData);

    /// @notice Called by the account after it executes.
    /// @param hookData What `preCheck` returned.
    function postCheck(bytes calldata hookData) external;
}
