/**
 * What `postern user …` changes, whichever user database holds the users: the passwd file (passwd-edit.ts)
 * or PostgreSQL (postgres.ts). Errors are PasswdFileError with a stable code in both.
 */
import {
  type AddUserOptions,
  addUser,
  deleteUser,
  listUsers,
  type SetPasswordOptions,
  setPassword,
  type UserSummary,
} from './passwd-edit.ts';

export interface UserAdmin {
  listUsers(): Promise<UserSummary[]>;
  addUser(name: string, password: string, opts?: AddUserOptions): Promise<void>;
  setPassword(name: string, password: string, opts?: SetPasswordOptions): Promise<void>;
  deleteUser(name: string): Promise<void>;
}

export function passwdFileAdmin(path: string): UserAdmin {
  return {
    listUsers: () => listUsers(path),
    addUser: (name, password, opts) => addUser(path, name, password, opts),
    setPassword: (name, password, opts) => setPassword(path, name, password, opts),
    deleteUser: (name) => deleteUser(path, name),
  };
}
