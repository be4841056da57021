// What the page hands the app (frontend/views.py studio()).
export interface StudioBoot {
  user: { username: string; is_staff: boolean; permissions: string[] };
  language: string;
  urls: { admin: string; logout: string; setlang: string };
}

export function readBoot<T>(id: string): T {
  const element = document.getElementById(id);
  if (!element?.textContent) throw new Error(`missing #${id}`);
  return JSON.parse(element.textContent) as T;
}
