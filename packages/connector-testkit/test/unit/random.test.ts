import { describe, expect, it } from 'vitest';
import { mulberry32 } from '../../src/index.js';

describe('mulberry32', () => {
  it('gives the sequence the copies it replaced gave for a seed (pinned values)', () => {
    const draw = (seed: number) => {
      const next = mulberry32(seed);
      return [next(), next(), next()];
    };
    expect(draw(1)).toEqual([0.6270739405881613, 0.002735721180215478, 0.5274470399599522]);
    expect(draw(0)).toEqual([0.26642920868471265, 0.0003297457005828619, 0.2232720274478197]);
    expect(draw(20261204)).toEqual([0.4829531970899552, 0.6374676111154258, 0.3480414592195302]);
  });

  it('takes the seed as an unsigned 32-bit integer and stays in [0, 1)', () => {
    const a = mulberry32(-1);
    const b = mulberry32(2 ** 32 - 1);
    for (let i = 0; i < 1000; i++) {
      const x = a();
      expect(b()).toBe(x);
      expect(x >= 0 && x < 1).toBe(true);
    }
  });
});
