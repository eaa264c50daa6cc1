"""A 64-beam spinning LiDAR (HDL-64E-like) ray-cast against a :class:`StreetScene`.

Beams: 32 upper beams from +2.0 deg to -8.33 deg and 32 lower beams from -8.83 deg to -24.8 deg
(elevation in the Velodyne frame: x forward, y left, z up); azimuth steps of
``azimuth_step_deg`` over the full circle. The scan is instantaneous (no rolling-shutter motion
distortion). Returns are kept up to ``max_range_m`` (KITTI: 120 m); occlusion comes for free
from nearest-hit ray casting.
"""
from __future__ import annotations

import numpy as np

from .scene import RayGrid, StreetScene, cast, surface

MAX_RANGE_M = 120.0


def beam_elevations_deg() -> np.ndarray:
    """(64,) beam elevations, degrees, top beam first."""
    return np.concatenate([np.linspace(2.0, -8.33, 32), np.linspace(-8.83, -24.8, 32)])


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
        ce, se = np.cos(self.el)[:, None], np.sin(self.el)[:, None]
        dv = np.stack([ce * np.cos(self.az)[None, :], ce * np.sin(self.az)[None, :],
                       np.broadcast_to(se, (len(self.el), n_az))])  # (3, B, A) velo frame
        self.d_velo = dv
        self.d = np.einsum('ij,jba->iba', self.T_world_velo[:3, :3], dv).astype(np.float32)
        self._prepare()

    def cells(self, lo, hi):
        """Beam/azimuth indices that may hit the axis-aligned box [lo, hi] (world, m)."""
        lo = np.asarray(lo, np.float64)
        hi = np.asarray(hi, np.float64)
        corners = np.array([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1])
                            for z in (lo[2], hi[2])])
        pv = (corners - self.origin) @ self.R_velo_world.T
        vlo, vhi = pv.min(0), pv.max(0)  # conservative velo-frame box
        n_b, n_a = len(self.el), len(self.az)
        inside_xy = vlo[0] <= 0 <= vhi[0] and vlo[1] <= 0 <= vhi[1]
        if inside_xy:
            return 0, n_b, 0, n_a
        xs = np.array([vlo[0], vhi[0], vlo[0], vhi[0]])
        ys = np.array([vlo[1], vlo[1], vhi[1], vhi[1]])
        az = np.arctan2(ys, xs)
        if az.max() - az.min() > np.pi:  # straddles +-180 deg (behind the sensor)
            c0, c1 = 0, n_a
        else:
            c0 = max(int(np.floor((az.min() + np.pi) / self.az_step)) - 1, 0)
            c1 = min(int(np.ceil((az.max() + np.pi) / self.az_step)) + 1, n_a)
        rho_min = np.hypot(max(vlo[0], 0, -vhi[0]), max(vlo[1], 0, -vhi[1]))
        rho_max = np.hypot(xs, ys).max()
        el_hi = np.arctan2(vhi[2], rho_min if vhi[2] > 0 else rho_max)
        el_lo = np.arctan2(vlo[2], rho_min if vlo[2] < 0 else rho_max)
        # Beams are sorted by decreasing elevation.
        r0 = int(np.searchsorted(-self.el, -el_hi, side='left')) - 1
        r1 = int(np.searchsorted(-self.el, -el_lo, side='right')) + 1
        r0, r1 = max(r0, 0), min(r1, n_b)
        if r0 >= r1 or c0 >= c1:
            return None
        return r0, r1, c0, c1


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
    t = hits.t
    ok = np.isfinite(t) & (t <= max_range_m) & (t >= min_range_m)
    b, a = np.nonzero(ok)
    rng_m = t[b, a].astype(np.float64)
    p_world = [rays.origin[k] + rays.d[k, b, a] * rng_m for k in range(3)]
    albedo = surface(scene, p_world, hits.kind[b, a], hits.idx[b, a], textured=False)
    if range_noise_m > 0:
        if rng is None:
            raise ValueError('range_noise_m > 0 needs an rng')
        rng_m = rng_m + rng.normal(0.0, range_noise_m, rng_m.shape)
    p_velo = rays.d_velo[:, b, a].T * rng_m[:, None]
    intensity = np.clip(albedo.mean(1) * 0.9 + 0.05, 0, 1)
    return np.concatenate([p_velo, intensity[:, None]], 1).astype(np.float32)
