"""Known-plaintext recovery of the block-wise baselines' keys (``le``, ``ele``, ``etc``).

Every method is a gather and an XOR over the image (pipeline/ppencrypt/ciphers/block.py), so what the
attacker recovers is written the same way: for each plain value, the ciphertext value it went
to and the XOR it got, i.e. a decryption ``x = y[src] ^ xor`` (a GatherXor; LE and ELE on the
nibble image). Each recovery matches the known plain blocks against the known encrypted blocks
under the method's structure and keeps, per unknown, the first choice consistent with all k
pairs (*ambiguous* when several are, *inconsistent* when none is — then the choice explaining
the most pairs — which is what image-scope keys produce with k ≥ 2):

* ``le`` — one permutation π of the L = 2·B²·C nibble positions and its inversion mask, shared
  by every block (and, under a dataset-scope key, every image). For plain position p, try every
  ciphertext position q and XOR e in {0, 15}: the true (q, e) matches in all k·blocks rows (64
  rows per 32×32 pair), a wrong one almost never. One pair usually determines the whole key.
* ``ele`` — per block its own permutation, then a block shuffle. Find, for plain block b, the
  ciphertext block whose values explain every position of b (up to v ↔ 15 − v), then inside the
  pair of blocks match positions as for LE — but with k rows instead of 64, so one pair leaves
  most positions ambiguous; more pairs are needed (the table in docs/privacy.md shows how many).
* ``etc`` — per block a position, one of 8 symmetries, a colour code (RGB) and an NP bit. For
  plain block b, try every ciphertext block, symmetry, colour code and negation (64·48·2 for
  32×32 RGB): a textured block has one match; flat blocks (one colour) match many.
* ``bsm`` — as ``etc`` with an NP bit per component: each component lane of a candidate is
  matched as it is or negated on its own (64·48·2³ for 32×32 RGB).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..ciphers import PERMUTATIONS, GatherXor, ImageCipher
from ..ciphers.block import ELE, ETC, LE, block_layout, merge_nibbles, split_nibbles, symmetry_table
from ..ciphers.scramble import BSM
from .consistency import consistency_counts, first_consistent


@dataclass
class BlockRecovery:
    transform: GatherXor  # decryption over the flat image (nibble image for LE/ELE)
    nibbles: bool
    stats: dict

    def decrypt(self, ciphertexts: np.ndarray) -> np.ndarray:
        if not self.nibbles:
            return self.transform.apply(ciphertexts)
        return merge_nibbles(self.transform.apply(split_nibbles(ciphertexts)))


def _blocks(images: np.ndarray, layout: np.ndarray) -> np.ndarray:
    """k x H x W x C -> k x blocks x L, values in block order."""
    return images.reshape(len(images), -1)[:, layout]


def _pick(full: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row of (R, choices) arrays: the choice kept, and the number of consistent choices."""
    return first_consistent(full, score), full.sum(-1)


def _decryptor(layout, plain_at, cipher_at, xor, nibbles) -> BlockRecovery:
    """plain value layout[...][plain_at] comes from ciphertext value cipher_at, XOR xor."""
    src = np.arange(layout.size, dtype=np.int64)
    mask = np.zeros(layout.size, np.uint8)
    src[plain_at] = cipher_at
    mask[plain_at] = xor
    return BlockRecovery(GatherXor(src, mask), nibbles, {})


def recover_le(plain: np.ndarray, cipher: np.ndarray, b: int) -> BlockRecovery:
    pn, cn = split_nibbles(plain), split_nibbles(cipher)
    layout = block_layout(*pn.shape[1:], b)
    x = _blocks(pn, layout).reshape(-1, layout.shape[1])  # rows: every block of every pair
    y = _blocks(cn, layout).reshape(-1, layout.shape[1])
    ox = (x[..., None] == np.arange(16)).astype(np.float32)  # one-hot: matches become one matmul
    oy = (y[..., None] == np.arange(16)).astype(np.float32)
    score = np.stack([np.einsum("mpv,mqv->pq", ox, oy), np.einsum("mpv,mqv->pq", ox, oy[..., ::-1])], -1)
    score = score.reshape(len(score), -1)  # p, (q, e)
    pick, alive = _pick(score == len(x), score)
    q, e = np.divmod(pick, 2)
    rec = _decryptor(layout, layout, layout[:, q], np.uint8(15) * e.astype(np.uint8), True)
    rec.stats = consistency_counts(alive, "positions")
    return rec


def recover_ele(plain: np.ndarray, cipher: np.ndarray, b: int) -> BlockRecovery:
    pn, cn = split_nibbles(plain), split_nibbles(cipher)
    layout = block_layout(*pn.shape[1:], b)
    nb, length = layout.shape
    x, y = _blocks(pn, layout), _blocks(cn, layout)  # k, blocks, L
    block_alive = np.empty(nb, np.int64)
    pos_alive = np.empty((nb, length), np.int64)
    plain_at, cipher_at, xor = [], [], []
    # A block's LE step permutes its values and inverts some (v <-> 15 - v): the multiset of
    # folded values min(v, 15 - v) survives it, so it says which ciphertext block a plain block went to.
    fold = lambda v: np.sort(np.minimum(v, 15 - v), axis=-1)  # noqa: E731
    same_multiset = (fold(x)[:, :, None] == fold(y)[:, None]).all(-1).all(0)  # plain block, ciphertext block
    for blk in range(nb):
        xb = x[:, blk, None, :, None]  # k, 1, p, 1 against y: k, blocks, 1, q
        score = np.stack([(xb == y[:, :, None, :]).sum(0), (xb == 15 - y[:, :, None, :]).sum(0)], -1)  # blocks, p, q, e
        full = (score == len(x)).reshape(nb, length, -1)
        explained = full.any(-1).sum(-1) + length * same_multiset[blk]  # rank multiset matches first
        best = np.flatnonzero(explained == explained.max())
        block_alive[blk] = len(best) if explained.max() == 2 * length else 0
        kb = best[0]
        pick, pos_alive[blk] = _pick(full[kb], score[kb].reshape(length, -1))
        q, e = np.divmod(pick, 2)
        plain_at.append(layout[blk])
        cipher_at.append(layout[kb, q])
        xor.append(np.uint8(15) * e.astype(np.uint8))
    rec = _decryptor(layout, np.concatenate(plain_at), np.concatenate(cipher_at), np.concatenate(xor), True)
    rec.stats = {**consistency_counts(block_alive, "blocks", "blocks_"), **consistency_counts(pos_alive, "positions")}
    return rec


def etc_locals(b: int, c: int) -> np.ndarray:
    """(T, L): for every (symmetry, colour code) the input position of each output value, as
    the cipher builds it (block.ETC.image_transform)."""
    sym = symmetry_table(b, c)
    if c != 3:
        return sym
    lanes = np.arange(sym.shape[1]) % 3
    return np.concatenate([sym - sym % 3 + PERMUTATIONS[code][lanes] for code in range(6)])


def recover_etc(plain: np.ndarray, cipher: np.ndarray, b: int) -> BlockRecovery:
    layout = block_layout(*plain.shape[1:], b)
    nb = layout.shape[0]
    local = etc_locals(b, plain.shape[3])  # T, L
    x, y = _blocks(plain, layout), _blocks(cipher, layout)  # k, blocks, L
    alive = np.empty(nb, np.int64)
    plain_at, cipher_at, xor = [], [], []
    for blk in range(nb):
        moved = x[:, blk][:, local][:, None]  # k, 1, T, L: the plain block under every transform
        same = (moved == y[:, :, None, :]).sum(-1)  # k, blocks, T: matching values
        negated = (moved == 255 - y[:, :, None, :]).sum(-1)
        score = np.stack([same, negated], -1)  # k, blocks, T, e
        full = (score == local.shape[1]).all(0).reshape(-1)
        pick, count = _pick(full[None], score.sum(0).reshape(1, -1))
        alive[blk] = count[0]
        kb, t, e = np.unravel_index(int(pick[0]), (nb, len(local), 2))
        plain_at.append(layout[blk, local[t]])
        cipher_at.append(layout[kb])
        xor.append(np.full(local.shape[1], 255 * e, np.uint8))
    rec = _decryptor(layout, np.concatenate(plain_at), np.concatenate(cipher_at), np.concatenate(xor), False)
    rec.stats = consistency_counts(alive, "blocks")
    return rec


def recover_bsm(plain: np.ndarray, cipher: np.ndarray, b: int) -> BlockRecovery:
    layout = block_layout(*plain.shape[1:], b)
    nb, length = layout.shape
    c = plain.shape[3]
    local = etc_locals(b, c)  # T, L
    lanes = np.arange(length) % c
    signs = (np.arange(2**c)[:, None] >> np.arange(c)) & 1  # E, C: which output lanes are negated
    x, y = _blocks(plain, layout), _blocks(cipher, layout)  # k, blocks, L
    alive = np.empty(nb, np.int64)
    plain_at, cipher_at, xor = [], [], []
    for blk in range(nb):
        moved = x[:, blk][:, local][:, None]  # k, 1, T, L
        lane = lambda hits: np.stack([hits[..., lanes == j].sum(-1) for j in range(c)], -1)  # noqa: E731  k, blocks, T, C
        same, negated = lane(moved == y[:, :, None, :]), lane(moved == 255 - y[:, :, None, :])
        score = np.where(signs.astype(bool), negated[..., None, :], same[..., None, :]).sum(-1)  # k, blocks, T, E
        full = (score == length).all(0).reshape(-1)
        pick, count = _pick(full[None], score.sum(0).reshape(1, -1))
        alive[blk] = count[0]
        kb, t, e = np.unravel_index(int(pick[0]), (nb, len(local), len(signs)))
        plain_at.append(layout[blk, local[t]])
        cipher_at.append(layout[kb])
        xor.append((255 * signs[e][lanes]).astype(np.uint8))
    rec = _decryptor(layout, np.concatenate(plain_at), np.concatenate(cipher_at), np.concatenate(xor), False)
    rec.stats = consistency_counts(alive, "blocks")
    return rec


# Each recovery exploits one cipher's structure, so it is tied to the class, not to a name.
RECOVERIES = {LE: recover_le, ELE: recover_ele, ETC: recover_etc, BSM: recover_bsm}


def block_recovery(cipher: ImageCipher):
    """The known-plaintext key recovery for ``cipher``'s class, ``(plain, cipher, block) ->
    BlockRecovery``; None when there is none (a method added without one)."""
    return RECOVERIES.get(type(cipher))
