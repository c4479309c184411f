"""Scripted Raft scenarios in the style of etcd's ``testdata/*.txt`` (datadriven).

A script is a sequence of blocks::

    # comments and blank lines between blocks are kept as they are
    campaign 1
    ----
    INFO 1: became pre-candidate term=0
    ...

Each block is one command, a ``----`` line, and the expected output, which ends at the
first blank line. :func:`run_script` returns the script with every expected output
replaced by the actual one (equal to the input when everything matches), which is also
how expected outputs are rewritten (etcd's ``-rewrite``).

Commands (node ids are integers, ``[...]`` optional)::

    add-nodes N [voters=1,2,3] [learners=4] [pre-vote=false] [check-quorum=false]
              [election=10] [heartbeat=1] [message-bytes=N] [inflight=N]
    campaign ID                    tick ID [COUNT]
    tick-election ID               tick-heartbeat ID
    propose ID DATA                transfer-leader ID TARGET
    conf-change ID (add-voter N | add-learner N | remove N)... [transition=auto|implicit|explicit]
    conf-change ID leave-joint
    process-ready [ID...]          deliver-msgs [ID...] [drop]
    stabilize [ID...]              partition 1 2 | 3   block FROM TO   heal
    compact ID INDEX               restart ID
    status ID                      raft-log ID         applied ID
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from consensus.config import Config
from consensus.sim.format import describe_entry
from consensus.sim.interaction import InteractionEnvironment
from consensus.types import (
    ConfChange,
    ConfChangeSingle,
    ConfChangeTransition,
    ConfChangeType,
    EntryType,
)

SEPARATOR = "----"


class ScriptError(Exception):
    """A script that cannot be parsed or run (a broken test file, not a Raft failure)."""


@dataclass(frozen=True, slots=True)
class Block:
    line_number: int
    command: str
    expected: str
    # Comment and blank lines that preceded the command, kept for rewriting.
    preamble: tuple[str, ...]


def parse_script(text: str) -> tuple[list[Block], tuple[str, ...]]:
    """The blocks, and the lines after the last block."""
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    blocks: list[Block] = []
    preamble: list[str] = []
    position = 0
    while position < len(lines):
        line = lines[position]
        if not line.strip() or line.lstrip().startswith("#"):
            preamble.append(line)
            position += 1
            continue
        start = position
        if position + 1 >= len(lines) or lines[position + 1] != SEPARATOR:
            raise ScriptError(f"line {start + 1}: expected {SEPARATOR!r} after the command")
        position += 2
        expected: list[str] = []
        while position < len(lines) and lines[position] != "":
            expected.append(lines[position])
            position += 1
        blocks.append(Block(start + 1, line.strip(), "\n".join(expected), tuple(preamble)))
        preamble = []
    return blocks, tuple(preamble)


def run_script(text: str) -> str:
    """Run the script; return it with each expected output replaced by the actual one."""
    blocks, trailer = parse_script(text)
    interpreter = ScriptInterpreter()
    out: list[str] = []
    for block in blocks:
        out.extend(block.preamble)
        actual = interpreter.run(block)
        out.extend([block.command, SEPARATOR])
        if actual:
            out.append(actual)
    out.extend(trailer)
    return "\n".join(out) + "\n"


def _ids(arguments: list[str]) -> list[int]:
    try:
        return [int(argument) for argument in arguments]
    except ValueError:
        raise ScriptError(f"expected node ids, got {arguments}") from None


_CHANGE_TYPES = {
    "add-voter": ConfChangeType.ADD_VOTER,
    "add-learner": ConfChangeType.ADD_LEARNER,
    "remove": ConfChangeType.REMOVE_NODE,
}

_NODE_OPTIONS: dict[str, tuple[str, Callable[[str], object]]] = {
    "pre-vote": ("pre_vote", lambda value: value == "true"),
    "check-quorum": ("check_quorum", lambda value: value == "true"),
    "election": ("election_timeout_ticks", int),
    "heartbeat": ("heartbeat_interval_ticks", int),
    "message-bytes": ("message_size_bytes_max", int),
    "inflight": ("inflight_messages_max", int),
}


class ScriptInterpreter:
    def __init__(self) -> None:
        self.env = InteractionEnvironment()

    def run(self, block: Block) -> str:
        words = block.command.split()
        name, arguments = words[0], words[1:]
        handler = getattr(self, "command_" + name.replace("-", "_"), None)
        if handler is None:
            raise ScriptError(f"line {block.line_number}: unknown command {name!r}")
        try:
            handler(arguments)
        except (ValueError, IndexError, KeyError) as error:
            raise ScriptError(f"line {block.line_number}: {block.command}: {error!r}") from None
        text = self.env.take_output()
        return text if text else "ok"

    # ---- nodes and input ----

    def command_add_nodes(self, arguments: list[str]) -> None:
        count = int(arguments[0])
        voters: list[int] | None = None
        learners: list[int] = []
        overrides: dict[str, object] = {}
        for argument in arguments[1:]:
            key, _, value = argument.partition("=")
            if key == "voters":
                voters = _ids(value.split(",")) if value else []
            elif key == "learners":
                learners = _ids(value.split(","))
            elif key in _NODE_OPTIONS:
                field, convert = _NODE_OPTIONS[key]
                overrides[field] = convert(value)
            else:
                raise ScriptError(f"unknown add-nodes option {key!r}")
        self.env.add_nodes(count, voters=voters, learners=learners, **overrides)

    def command_campaign(self, arguments: list[str]) -> None:
        self.env.campaign(int(arguments[0]))

    def command_tick(self, arguments: list[str]) -> None:
        count = int(arguments[1]) if len(arguments) > 1 else 1
        self.env.tick(int(arguments[0]), count)

    def command_tick_election(self, arguments: list[str]) -> None:
        node_id = int(arguments[0])
        config: Config = self.env.nodes[node_id].config
        self.env.tick(node_id, config.election_timeout_ticks)

    def command_tick_heartbeat(self, arguments: list[str]) -> None:
        node_id = int(arguments[0])
        config: Config = self.env.nodes[node_id].config
        self.env.tick(node_id, config.heartbeat_interval_ticks)

    def command_propose(self, arguments: list[str]) -> None:
        self.env.propose(int(arguments[0]), " ".join(arguments[1:]).encode())

    def command_transfer_leader(self, arguments: list[str]) -> None:
        self.env.transfer_leadership(int(arguments[0]), int(arguments[1]))

    def command_conf_change(self, arguments: list[str]) -> None:
        node_id = int(arguments[0])
        rest = arguments[1:]
        transition = ConfChangeTransition.AUTO
        changes: list[ConfChangeSingle] = []
        position = 0
        while position < len(rest):
            word = rest[position]
            if word == "leave-joint":
                position += 1
            elif word.startswith("transition="):
                transition = ConfChangeTransition[
                    {"auto": "AUTO", "implicit": "JOINT_IMPLICIT", "explicit": "JOINT_EXPLICIT"}[
                        word.partition("=")[2]
                    ]
                ]
                position += 1
            else:
                changes.append(ConfChangeSingle(_CHANGE_TYPES[word], int(rest[position + 1])))
                position += 2
        change = ConfChange(changes=tuple(changes), transition=transition)
        self.env.propose_conf_change(node_id, change)

    def command_compact(self, arguments: list[str]) -> None:
        self.env.compact(int(arguments[0]), int(arguments[1]))

    def command_restart(self, arguments: list[str]) -> None:
        self.env.restart(int(arguments[0]))

    # ---- Ready and network ----

    def command_process_ready(self, arguments: list[str]) -> None:
        self.env.process_ready(_ids(arguments) or None)

    def command_deliver_msgs(self, arguments: list[str]) -> None:
        drop = "drop" in arguments
        ids = _ids([argument for argument in arguments if argument != "drop"])
        self.env.deliver(ids or None, drop=drop)

    def command_stabilize(self, arguments: list[str]) -> None:
        self.env.stabilize(_ids(arguments) or None)

    def command_partition(self, arguments: list[str]) -> None:
        groups: list[list[int]] = [[]]
        for argument in arguments:
            if argument == "|":
                groups.append([])
            else:
                groups[-1].append(int(argument))
        self.env.partition(groups)
        self.env.output.append(
            "partitioned "
            + " | ".join(" ".join(str(node_id) for node_id in group) for group in groups)
        )

    def command_block(self, arguments: list[str]) -> None:
        sender, receiver = _ids(arguments)
        self.env.block(sender, receiver)
        self.env.output.append(f"blocked {sender}->{receiver}")

    def command_heal(self, arguments: list[str]) -> None:
        self.env.heal()

    # ---- inspection ----

    def command_status(self, arguments: list[str]) -> None:
        self.env.output.append(self.env.describe_status(int(arguments[0])))

    def command_raft_log(self, arguments: list[str]) -> None:
        self.env.output.append(self.env.describe_log(int(arguments[0])))

    def command_applied(self, arguments: list[str]) -> None:
        node_id = int(arguments[0])
        node = self.env.nodes[node_id]
        described = [
            describe_entry(entry)
            for entry in node.applied
            if entry.type == EntryType.CONF_CHANGE or entry.data
        ]
        prefix = f"snapshot {node.snapshot_index} + " if node.snapshot_index else ""
        self.env.output.append(f"{node_id}: applied {prefix}[{', '.join(described)}]")
