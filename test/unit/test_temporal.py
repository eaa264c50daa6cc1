"""TAE and flicker on analytic scenes (planes seen from a moving camera), and pose lookup."""
import numpy as np
import pytest

from urcdc_depth_ros.evaluation.bag_io import quaternion_to_matrix
from urcdc_depth_ros.evaluation.temporal import PoseTrack, ego_motion, pair_stability

W, H = 160, 64
K = np.array([[120.0, 0, 80.3], [0, 118.0, 30.7], [0, 0, 1]])


def _ray_depth(T_world_cam, planes):
    """Exact z-depth of the nearest plane (n . p = c, world frame) per pixel; NaN = none."""
    u, v = np.meshgrid(np.arange(W, dtype=np.float64), np.arange(H, dtype=np.float64))
    rays = np.stack([(u - K[0, 2]) / K[0, 0], (v - K[1, 2]) / K[1, 1], np.ones_like(u)])
    R, o = T_world_cam[:3, :3], T_world_cam[:3, 3]
    d_world = np.einsum('ij,jhw->ihw', R, rays)
    best = np.full((H, W), np.inf)
    for n, c in planes:
        den = np.einsum('i,ihw->hw', n, d_world)
        with np.errstate(divide='ignore', invalid='ignore'):
            z = (c - n @ o) / den        # ray parameter = z-depth, since rays have z = 1
        best = np.where((z > 0.1) & (z < best), z, best)
    return np.where(np.isfinite(best), best, np.nan)


PLANES = [(np.array([0.0, 1.0, 0.0]), 1.6),     # road, 1.6 m below the camera (y down)
          (np.array([1.0, 0.0, 0.0]), 4.0),     # facade 4 m to the right
          (np.array([0.0, 0.0, 1.0]), 40.0)]    # wall ahead


def _pose(x, z, yaw):
    T = np.eye(4)
    c, s = np.cos(yaw), np.sin(yaw)
    T[:3, :3] = [[c, 0, s], [0, 1, 0], [-s, 0, c]]
    T[:3, 3] = [x, 0.0, z]
    return T


def test_exact_depth_of_a_moving_camera_has_zero_tae_and_zero_flicker():
    Ta, Tb = _pose(0.0, 0.0, 0.0), _pose(0.15, 1.1, 0.03)
    da, db = _ray_depth(Ta, PLANES), _ray_depth(Tb, PLANES)
    st = pair_stability(da, db, K, np.linalg.inv(Tb) @ Ta)
    assert st.n > 0.5 * W * H
    assert st.tae < 1e-3 and st.flicker < 1e-4
    # the sceptic's baseline: ignoring the ego-motion is far off
    assert pair_stability(da, db, K, np.eye(4)).tae > 20 * st.tae


@pytest.mark.parametrize('scale', [1.03, 0.9])
def test_a_known_scale_jump_is_measured_as_flicker_and_raises_tae(scale):
    Ta, Tb = _pose(0.0, 0.0, 0.0), _pose(0.0, 1.0, 0.0)
    da, db = _ray_depth(Ta, PLANES), _ray_depth(Tb, PLANES)
    exact = pair_stability(da, db, K, np.linalg.inv(Tb) @ Ta)
    jumped = pair_stability(da, scale * db, K, np.linalg.inv(Tb) @ Ta)
    assert jumped.flicker == pytest.approx(abs(np.log(scale)), rel=0.05)
    assert jumped.tae == pytest.approx(abs(scale - 1), rel=0.15)
    assert jumped.tae > 20 * exact.tae


def test_per_pixel_noise_raises_tae_but_hardly_flicker():
    Ta, Tb = _pose(0.0, 0.0, 0.0), _pose(0.0, 1.0, 0.0)
    da, db = _ray_depth(Ta, PLANES), _ray_depth(Tb, PLANES)
    noisy = db * (1 + 0.02 * np.random.default_rng(0).standard_normal(db.shape))
    st = pair_stability(da, noisy, K, np.linalg.inv(Tb) @ Ta)
    assert st.tae > 0.01 and st.flicker < 0.005


def test_pose_track_interpolates_translation_and_rotation():
    def pose(t):
        T = np.eye(4)
        ang = 0.2 * t
        T[:3, :3] = quaternion_to_matrix([0, 0, np.sin(ang / 2), np.cos(ang / 2)])
        T[:3, 3] = [3.0 * t, 1.0, 0.5 * t]
        return T
    stamps = np.arange(5) * 100_000_000
    track = PoseTrack(stamps, [pose(s / 1e9) for s in stamps])
    mid = track.at(250_000_000)
    np.testing.assert_allclose(mid, pose(0.25), atol=1e-9)
    assert track.at(-1) is None and track.at(500_000_000) is None
    T_b_a = ego_motion(track, 100_000_000, 300_000_000)
    np.testing.assert_allclose(T_b_a, np.linalg.inv(pose(0.3)) @ pose(0.1), atol=1e-9)
    gappy = PoseTrack([0, 10**9], [pose(0), pose(1)])
    assert gappy.at(5 * 10**8) is None   # samples a second apart are not interpolated
