"""A 64-beam spinning LiDAR (HDL-64E-like) ray-cast against a :class:`StreetScene`.

Beams: 32 upper beams from +2.0 deg to -8.33 deg and 32 lower beams from -8.83 deg to -24.8 deg
(elevation in the Velodyne frame: x forward, y left, z up); azimuth steps of
``azimuth_step_deg`` over the full circle. The scan is instantaneous (no rolling-shutter motion
distortion). Returns are kept up to ``max_range_m`` (KITTI: 120 m); occlusion comes for free
from nearest-hit ray casting.
"""
from __future__ import annotations

from functools import lru_cache
from itertools import product

import numpy as np

from .scene import RayGrid, StreetScene, cast, point_albedo

MAX_RANGE_M = 120.0


def beam_elevations_deg() -> np.ndarray:
    """(64,) beam elevations, degrees, top beam first."""
    return np.concatenate([np.linspace(2.0, -8.33, 32), np.linspace(-8.83, -24.8, 32)])


@lru_cache(maxsize=2)
def _directions(n_az: int, R_world_velo: bytes) -> tuple[np.ndarray, ...]:
    """Unit beam x azimuth directions and their :meth:`RayGrid.terms`.

    Returns (d_velo, d, inv, a_xz, a_all): d_velo (3, B, A) float64 in the Velodyne frame, d
    float32 in the world frame. Cached: the sensor only translates from frame to frame.
    """
    el = np.deg2rad(beam_elevations_deg())
    az = -np.pi + (2 * np.pi / n_az) * (np.arange(n_az) + 0.5)
    ce, se = np.cos(el)[:, None], np.sin(el)[:, None]
    d_velo = np.stack([ce * np.cos(az)[None, :], ce * np.sin(az)[None, :],
                       np.broadcast_to(se, (len(el), n_az))])
    R = np.frombuffer(R_world_velo).reshape(3, 3)
    d = np.einsum('ij,jba->iba', R, d_velo).astype(np.float32)
    out = (d_velo, d) + RayGrid.terms(d)
    for a in out:
        a.flags.writeable = False
    return out


class LidarRays(RayGrid):
    """Unit rays of one scan in the world frame; grid rows = beams, columns = azimuths."""

    def __init__(self, T_world_velo: np.ndarray, azimuth_step_deg: float = 0.2):
        self.T_world_velo = np.asarray(T_world_velo, np.float64)
        self.R_velo_world = self.T_world_velo[:3, :3].T
        self.origin = self.T_world_velo[:3, 3].copy()
        self.el = np.deg2rad(beam_elevations_deg())
        n_az = int(round(360.0 / azimuth_step_deg))
        self.az_step = 2 * np.pi / n_az
        self.az = -np.pi + self.az_step * (np.arange(n_az) + 0.5)
        self.d_velo, self.d, self.inv, self.a_xz, self.a_all = _directions(
            n_az, self.T_world_velo[:3, :3].tobytes())

    def windows(self, lo, hi):
        """Beam x azimuth ranges [r0, r1) x [c0, c1), (N, 4), that may hit boxes ``lo..hi``.

        Conservative: the box's corners in the Velodyne frame bound its azimuths and elevations.
        """
        lo = np.asarray(lo, np.float64).reshape(-1, 3)
        hi = np.asarray(hi, np.float64).reshape(-1, 3)
        corners = np.stack([np.where(np.array(pick, bool), hi, lo)
                            for pick in product((0, 1), repeat=3)], 1)  # (N, 8, 3)
        pv = (corners - self.origin) @ self.R_velo_world.T
        vlo, vhi = pv.min(1), pv.max(1)  # conservative velo-frame box
        n_b, n_a = len(self.el), len(self.az)
        inside_xy = (vlo[:, 0] <= 0) & (0 <= vhi[:, 0]) & (vlo[:, 1] <= 0) & (0 <= vhi[:, 1])
        xs = np.stack([vlo[:, 0], vhi[:, 0], vlo[:, 0], vhi[:, 0]], 1)
        ys = np.stack([vlo[:, 1], vlo[:, 1], vhi[:, 1], vhi[:, 1]], 1)
        az = np.arctan2(ys, xs)
        all_az = inside_xy | (az.max(1) - az.min(1) > np.pi)  # around or behind the sensor
        c0 = np.where(all_az, 0, np.floor((az.min(1) + np.pi) / self.az_step) - 1)
        c1 = np.where(all_az, n_a, np.ceil((az.max(1) + np.pi) / self.az_step) + 1)
        rho_min = np.hypot(np.maximum(np.maximum(vlo[:, 0], 0), -vhi[:, 0]),
                           np.maximum(np.maximum(vlo[:, 1], 0), -vhi[:, 1]))
        rho_max = np.hypot(xs, ys).max(1)
        el_hi = np.arctan2(vhi[:, 2], np.where(vhi[:, 2] > 0, rho_min, rho_max))
        el_lo = np.arctan2(vlo[:, 2], np.where(vlo[:, 2] < 0, rho_min, rho_max))
        # Beams are sorted by decreasing elevation.
        r0 = np.where(inside_xy, 0, np.searchsorted(-self.el, -el_hi, side='left') - 1)
        r1 = np.where(inside_xy, n_b, np.searchsorted(-self.el, -el_lo, side='right') + 1)
        win = np.stack([r0, r1, c0, c1], 1)
        return np.clip(win, 0, [n_b, n_b, n_a, n_a]).astype(np.int64)


def scan(scene: StreetScene, T_world_velo: np.ndarray, azimuth_step_deg: float = 0.2,
         max_range_m: float = MAX_RANGE_M, min_range_m: float = 0.9,
         range_noise_m: float = 0.0, rng: np.random.Generator | None = None) -> np.ndarray:
    """One LiDAR sweep.

    Args:
        T_world_velo: (4, 4) Velodyne frame -> world frame.
        range_noise_m: standard deviation of Gaussian range noise, metres (needs ``rng``).
    Returns:
        (N, 4) float32 points in the Velodyne frame: x, y, z (metres), intensity in [0, 1],
        ordered beam by beam (top beam first), azimuth ascending from -180 deg.
    """
    rays = LidarRays(T_world_velo, azimuth_step_deg)
    hits = cast(scene, rays, max_range=max_range_m + 1.0)
    t = hits.t.reshape(-1)
    keep = np.flatnonzero((t <= max_range_m) & (t >= min_range_m))
    rng_m = t.take(keep).astype(np.float64)
    d = rays.d.reshape(3, -1)
    p_world = [rays.origin[k] + d[k].take(keep) * rng_m for k in range(3)]
    grey = point_albedo(scene, hits.kind.reshape(-1).take(keep), hits.idx.reshape(-1).take(keep),
                        p_world)
    if range_noise_m > 0:
        if rng is None:
            raise ValueError('range_noise_m > 0 needs an rng')
        rng_m = rng_m + rng.normal(0.0, range_noise_m, rng_m.shape)
    out = np.empty((len(keep), 4), np.float32)
    d_velo = rays.d_velo.reshape(3, -1)
    for k in range(3):
        out[:, k] = d_velo[k].take(keep) * rng_m
    out[:, 3] = np.clip(grey * 0.9 + 0.05, 0, 1)
    return out
