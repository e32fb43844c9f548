// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// @title MockERC20
/// @notice A plain ERC-20 with 6 decimals and open minting, for tests and local demos.
contract MockERC20 {
    /// @notice The token name.
    string public name;

    /// @notice The token symbol.
    string public symbol;

    /// @notice Always 6, like USDC.
    uint8 public constant decimals = 6;

    /// @notice Total minted.
    uint256 public totalSupply;

    /// @notice Balance of each holder.
    mapping(address holder => uint256) public balanceOf;

    /// @notice How much `spender` may still move from `holder`.
    mapping(address holder => mapping(address spender => uint256)) public allowance;

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
    /// @param name_ The token name.
    /// @param symbol_ The token symbol.
    constructor(string memory name_, string memory symbol_) {
        name = name_;
        symbol = symbol_;
    }

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

    function _transfer(address from, address to, uint256 amount) internal {
        uint256 balance = balanceOf[from];
        if (balance < amount) revert InsufficientBalance(from, balance, amount);
        unchecked {
            balanceOf[from] = balance - amount;
            balanceOf[to] += amount; // cannot overflow: bounded by totalSupply
        }
        emit Transfer(from, to, amount);
    }
}
