"""jigsaw: put block-scrambled images back together from the ciphertext alone, one image at a
time — the class of attack of Chuman & Kiya's jigsaw-puzzle solvers on EtC images.

A block cipher that moves whole B×B blocks (``etc``, ``ele``) leaves every block's content in one
piece. The solver treats the ciphertext as a puzzle of nb = (H/B)·(W/B) pieces, each of which
may have been transformed by one of T block maps the method's definition allows, and
reassembles it greedily by edge compatibility:

1. every piece under every candidate decryption x = y[inv[t]] ^ xor[t] (``etc``: 8 symmetries ×
   2 negations × 6 colour orders on RGB = 96; 16 on grayscale);
2. the *seed* — the most textured piece — is placed as it is;
3. repeatedly, over every empty slot next to the placed pieces (within an (H/B)×(W/B) frame),
   every free piece and every candidate: the mean dissimilarity with the placed neighbours,
   each side compared by prediction (the pixel beyond an edge continues the gradient of the
   last two lines, Pomeranz et al.'s prediction-based compatibility) in both directions. The
   placement whose best candidate beats its slot's runner-up (another piece) by the widest
   ratio goes first — the confident placements before the ambiguous ones.

Each image is solved on its own, so a key per image does not stop it. The seed's own transform
is unknown, so a solved image comes out under one *global* variant: a whole-image rotation /
flip, negation and colour order (96 on RGB, 16 on grayscale; only the 4 shape-keeping
symmetries on non-square grids). As for fr-shared, the audit stands in for the viewer who picks
it by eye — here per image, since every image has its own seed (``Outcome.variants``).

What it undoes, per method (``SOLVERS``, tied to the class like known_block.RECOVERIES):

* ``etc`` — block positions, and each block's symmetry, negation and colour order: everything.
  Flat blocks (one colour) carry no edge information, so their place is a guess — harmless
  when they are all alike (a black background), visible otherwise.
* ``ele`` — only block positions, and not by edges: each block's nibbles were permuted and
  inverted by a key of its own (L! maps, L = 2·B²·C), which leaves no edge to match. What
  survives is the multiset of folded nibbles min(v, 15 − v); the solver renders each block as
  a flat patch of the brightness that suggests (the dark branch of the fold, as fr-basic takes
  it) and arranges those patches by the same greedy, which only groups similar levels.
* ``bsm`` — as ``etc``, with a negation per component of each block: 8 · 6 · 2³ = 384
  candidates per piece on RGB (16 on grayscale), and the solved image is left with a negation
  per component (8 on RGB) instead of one for the whole.
* ``le`` — nothing to reassemble: its blocks stay in place.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..ciphers.block import ELE, ETC, block_layout, split_nibbles
from ..ciphers.scramble import BSM
from .attacks import Attack, Outcome, Target, register
from .known_block import etc_locals
from .variants import WholeImageVariants

SIDES = 4  # top, right, bottom, left
OPPOSITE = (2, 3, 0, 1)
STEP = ((-1, 0), (0, 1), (1, 0), (0, -1))


@dataclass(frozen=True)
class BlockCandidates:
    """Every decryption of one block the method allows: ``x = y[inv[t]] ^ xor[t]`` over the
    block's L = B·B·C values (block order: row, column, component)."""

    inv: np.ndarray  # (T, L) int64
    xor: np.ndarray  # (T,) uint8: 0, or 255 for a negated block; or (T, L): per value

    def __len__(self) -> int:
        return len(self.inv)

    def decryptions(self, blocks: np.ndarray) -> np.ndarray:
        """(..., L) ciphertext blocks -> (..., T, L)."""
        return blocks[..., self.inv] ^ self.xor.reshape(len(self.inv), -1)


def etc_candidates(b: int, c: int) -> BlockCandidates:
    """``etc``'s block maps (symmetry × colour order, as the cipher builds them), each with and
    without negation."""
    inv = np.argsort(etc_locals(b, c), axis=1)
    return BlockCandidates(np.concatenate([inv, inv]), np.repeat(np.array([0, 255], np.uint8), len(inv)))


def bsm_candidates(b: int, c: int) -> BlockCandidates:
    """``bsm``'s block maps: symmetry × colour order, each under every negation of the output
    components (2^C): x = (y ^ xor)[inv], so value p of a candidate takes the negation of the
    lane it is gathered from."""
    inv = np.argsort(etc_locals(b, c), axis=1)  # T, L
    signs = (np.arange(2**c)[:, None] >> np.arange(c)) & 1  # E, C
    xor = (255 * signs[:, inv % c]).astype(np.uint8)  # E, T, L
    return BlockCandidates(np.tile(inv, (len(signs), 1)), xor.reshape(-1, inv.shape[1]))


def placement_only(b: int, c: int) -> BlockCandidates:
    """Blocks moved but not transformed: the solver only has to find positions."""
    return BlockCandidates(np.arange(b * b * c, dtype=np.int64)[None], np.zeros(1, np.uint8))


def ele_patches(ciphertexts: np.ndarray, b: int) -> np.ndarray:
    """Each ``ele`` block as a flat patch: the nibble permutation and inversion keep only the
    multiset of folded nibbles min(v, 15 - v) (0..7); their mean, read as an upper nibble on the
    dark branch (v < 128, as fr-basic takes the fold), gives the patch's grey level."""
    n, h, w, c = ciphertexts.shape
    nibbles = split_nibbles(ciphertexts)
    layout = block_layout(h, w, 2 * c, b)
    folded = np.minimum(nibbles, 15 - nibbles).reshape(n, -1)[:, layout]  # n, blocks, 2·B²·C
    level = np.clip(16 * folded.mean(-1) + 8, 0, 255).astype(np.uint8)  # n, blocks
    grid = level.reshape(n, h // b, w // b)
    return grid.repeat(b, axis=1).repeat(b, axis=2)[..., None].repeat(c, axis=3)


def side_lines(pieces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(..., B, B, C) pieces -> the outer and the next-inner line of each side, (..., 4, B·C),
    each read along its edge in the same direction as the facing side of a neighbour."""
    b = pieces.shape[-3]
    inner = 1 if b > 1 else 0
    outer = [pieces[..., 0, :, :], pieces[..., :, -1, :], pieces[..., -1, :, :], pieces[..., :, 0, :]]
    nxt = [pieces[..., inner, :, :], pieces[..., :, -1 - inner, :], pieces[..., -1 - inner, :, :], pieces[..., :, inner, :]]
    flat = lambda lines: np.stack(lines, axis=-3).reshape(*pieces.shape[:-3], SIDES, -1)  # noqa: E731
    return flat(outer), flat(nxt)


SEEDS = 3  # seeds tried per image (the most textured pieces); the assembly with the least total dissimilarity wins


def predicted(outer: np.ndarray, inner: np.ndarray) -> np.ndarray:
    """The line just beyond a side, extrapolated half a step: 1.5·outer − 0.5·inner."""
    return 1.5 * outer - 0.5 * inner


def dissimilarity(pred_a, out_a, pred_b, out_b) -> np.ndarray:
    """How badly piece b's facing line continues piece a's side, and back: squared distance of
    each outer line from the other side's extrapolation (prediction-based compatibility; the
    half step finds the true neighbour among all pieces of the vendored CIFAR-10 images more
    often than plain SSD or L1 of the facing lines, or the full-step prediction)."""
    return ((pred_a - out_b) ** 2).sum(-1) + ((pred_b - out_a) ** 2).sum(-1)


class Pieces:
    """One image's pieces under every candidate, with what the costs need, computed once for all
    the seeds tried."""

    def __init__(self, pieces: np.ndarray):
        self.pieces = pieces  # (nb, T, B, B, C) float32
        nb, t = pieces.shape[:2]
        outer, inner = side_lines(pieces)  # nb, T, 4, V
        pred = predicted(outer, inner)
        self.outer, self.pred = outer, pred
        # Facing side a of a placed piece with side b of every candidate costs
        # ||pred_a − out_b||² + ||pred_b − out_a||² = |a|² + |b|² − 2·[out_b | pred_b]·[pred_a | out_a],
        # with |x|² = |out_x|² + |pred_x|²: one matrix-vector product per placed neighbour.
        flat = lambda x: np.ascontiguousarray(x.reshape(nb * t, -1))  # noqa: E731
        self.rows = [flat(np.concatenate([outer[:, :, s], pred[:, :, s]], -1)) for s in range(SIDES)]
        self.facing = [flat(np.concatenate([pred[:, :, s], outer[:, :, s]], -1)) for s in range(SIDES)]
        self.norms = [flat((outer[:, :, s] ** 2).sum(-1) + (pred[:, :, s] ** 2).sum(-1))[:, 0] for s in range(SIDES)]

    def facing_cost(self, piece: int, cand: int, side: int) -> np.ndarray:
        """(nb · T,) the cost of every piece under every candidate beyond ``side`` of the placed one."""
        t = self.pieces.shape[1]
        opp, k = OPPOSITE[side], piece * t + cand
        cost = self.rows[opp] @ self.facing[side][k]
        cost *= -2
        cost += self.norms[opp]
        cost += self.norms[side][k]
        return cost


class Puzzle:
    """One image's greedy assembly on a canvas twice the grid's size, so the seed may end up
    anywhere in the final (R × K) frame."""

    def __init__(self, pieces: Pieces, grid: tuple[int, int]):
        self.data = pieces
        self.pieces = pieces.pieces
        nb, t = self.pieces.shape[:2]
        self.rows, self.cols = grid
        self.shape = (2 * self.rows - 1, 2 * self.cols - 1)
        self.cost = np.zeros((*self.shape, nb * t), np.float32)  # summed over the slot's placed neighbours
        self.count = np.zeros(self.shape, np.int64)
        # per slot and free piece: its best candidate's mean cost (inf: used, or no neighbour yet)
        self.best = np.full((*self.shape, nb), np.inf, np.float32)
        self.best_cand = np.zeros((*self.shape, nb), np.int64)
        self.slot = np.full((*self.shape, 2), -1, np.int64)  # (piece, candidate) placed there
        self.used = np.zeros(nb, bool)
        self.box = None  # (top, left, bottom, right) of the placed pieces, inclusive

    def fits(self, i: np.ndarray, j: np.ndarray) -> np.ndarray:
        """Which slots keep the placed pieces inside an R × K frame (or K × R: the seed may lie
        on its side)."""
        top, left, bottom, right = self.box
        h = np.maximum(bottom, i) - np.minimum(top, i) + 1
        w = np.maximum(right, j) - np.minimum(left, j) + 1
        return ((h <= self.rows) & (w <= self.cols)) | ((h <= self.cols) & (w <= self.rows))

    def place(self, piece: int, cand: int, i: int, j: int) -> None:
        self.slot[i, j] = piece, cand
        self.used[piece] = True
        self.best[..., piece] = np.inf
        self.box = (i, j, i, j) if self.box is None else (min(self.box[0], i), min(self.box[1], j), max(self.box[2], i), max(self.box[3], j))
        nb = len(self.used)
        for side, (di, dj) in enumerate(STEP):
            ni, nj = i + di, j + dj
            if not (0 <= ni < self.shape[0] and 0 <= nj < self.shape[1]) or self.slot[ni, nj, 0] >= 0:
                continue
            self.cost[ni, nj] += self.data.facing_cost(piece, cand, side)
            self.count[ni, nj] += 1
            per_piece = self.cost[ni, nj].reshape(nb, -1)
            self.best_cand[ni, nj] = per_piece.argmin(1)
            best = per_piece[np.arange(nb), self.best_cand[ni, nj]] / self.count[ni, nj]
            best[self.used] = np.inf
            self.best[ni, nj] = best

    def step(self) -> None:
        ii, jj = np.nonzero((self.count > 0) & (self.slot[..., 0] < 0))
        keep = self.fits(ii, jj)
        ii, jj = ii[keep], jj[keep]
        per_piece = self.best[ii, jj]  # F, nb
        confidence = np.zeros(len(ii))
        if per_piece.shape[1] > 1:
            two = np.partition(per_piece, 1, axis=1)[:, :2]
            confidence = (two[:, 0] + 1.0) / (two[:, 1] + 1.0)  # +1: flat pieces tie at 0
            confidence[~np.isfinite(two[:, 1])] = 0.0  # the last free piece: no runner-up
        f = int(np.argmin(confidence))
        i, j = int(ii[f]), int(jj[f])
        piece = int(np.argmin(per_piece[f]))
        self.place(piece, int(self.best_cand[i, j, piece]), i, j)

    def assemble(self, seed: int) -> tuple[np.ndarray, float]:
        """Grow the image from piece ``seed`` as it is: (H × W × C float in the seed's frame,
        total dissimilarity of its adjacent pieces)."""
        self.place(seed, 0, self.rows - 1, self.cols - 1)
        for _ in range(len(self.pieces) - 1):
            self.step()
        top, left, bottom, right = self.box
        grid = self.slot[top : bottom + 1, left : right + 1]
        p, t = grid[..., 0], grid[..., 1]
        o, q = self.data.outer[p, t], self.data.pred[p, t]  # rows, cols, 4, V
        total = dissimilarity(q[:, :-1, 1], o[:, :-1, 1], q[:, 1:, 3], o[:, 1:, 3]).sum()
        total += dissimilarity(q[:-1, :, 2], o[:-1, :, 2], q[1:, :, 0], o[1:, :, 0]).sum()
        image = np.concatenate([np.concatenate(list(self.pieces[p[r], t[r]]), axis=1) for r in range(len(p))], axis=0)
        if grid.shape[:2] != (self.rows, self.cols):  # assembled on its side: a global variant anyway
            image = np.rot90(image)
        return image, float(total)


def assemble(pieces: np.ndarray, grid: tuple[int, int], seeds: int = SEEDS) -> np.ndarray:
    """The best of the greedy assemblies grown from the ``seeds`` most textured pieces."""
    texture = pieces[:, 0].reshape(len(pieces), -1).std(-1)
    data = Pieces(pieces)
    tries = [Puzzle(data, grid).assemble(int(s)) for s in np.argsort(-texture, kind="stable")[:seeds]]
    return min(tries, key=lambda tried: tried[1])[0]


def solve(ciphertexts: np.ndarray, b: int, candidates: BlockCandidates, seeds: int = SEEDS) -> np.ndarray:
    """Reassemble every image of N × H × W × C ``ciphertexts`` (B × B pieces, each possibly
    transformed by one of ``candidates``); N × H × W × C uint8, each in its seed's frame."""
    n, h, w, c = ciphertexts.shape
    layout = block_layout(h, w, c, b)
    out = np.empty_like(ciphertexts)
    for k in range(n):
        blocks = ciphertexts[k].reshape(-1)[layout]  # nb, L
        pieces = candidates.decryptions(blocks).reshape(len(layout), len(candidates), b, b, c).astype(np.float32)
        out[k] = assemble(pieces, (h // b, w // b), seeds).astype(np.uint8)
    return out


def _etc(ciphertexts: np.ndarray, b: int) -> tuple[np.ndarray, BlockCandidates]:
    return ciphertexts, etc_candidates(b, ciphertexts.shape[3])


def _bsm(ciphertexts: np.ndarray, b: int) -> tuple[np.ndarray, BlockCandidates]:
    return ciphertexts, bsm_candidates(b, ciphertexts.shape[3])


def _ele(ciphertexts: np.ndarray, b: int) -> tuple[np.ndarray, BlockCandidates]:
    return ele_patches(ciphertexts, b), placement_only(b, ciphertexts.shape[3])


# What the solver can undo depends on the cipher's structure, so it is tied to the class.
SOLVERS = {ETC: _etc, ELE: _ele, BSM: _bsm}


@register
class Jigsaw(Attack):
    name = "jigsaw"
    summary = "per image: undo each block's transform and reassemble the blocks by edge compatibility"

    def not_applicable(self, target: Target) -> str | None:
        if target.cipher.family != "block":
            return "not block-wise: no blocks to reassemble"
        if type(target.cipher) not in SOLVERS:
            return f"no jigsaw solver for method {target.method!r} (its blocks do not move, or are not whole)"
        return None

    def run(self, ciphertexts, target, pairs=None):
        b = target.cipher.block
        pieces, candidates = SOLVERS[type(target.cipher)](ciphertexts, b)
        images = solve(pieces, b, candidates)
        h, w, c = target.shape
        stats = {"pieces": (h // b) * (w // b), "candidates": len(candidates)}
        negations = "per-component" if type(target.cipher) is BSM else "whole"  # the seed's own negation
        return Outcome(images, stats, variants=WholeImageVariants(c, square=h == w, per_image=True, negations=negations))
